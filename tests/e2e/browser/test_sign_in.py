"""Signing in to the web app: customers with an account, staff with a link or a token,
and staff boards closed to those signed out."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any

from playwright.async_api import Browser, Page, expect
from running_pizza import PIZZA, Pizza

WAIT_MS = 30_000
PASSWORD = "basil and tomato"


async def session_of(page: Page) -> Any:
    return await page.evaluate("() => Pizza.session()")


async def account_form(page: Page, heading: str, email: str, password: str) -> None:
    """Type an email and a password into the form under ``heading`` and submit it."""
    form = page.get_by_role("region", name=heading)
    await form.get_by_label("Email").press_sequentially(email)
    await form.get_by_label("Password").press_sequentially(password)
    button = "Create account" if heading == "Create an account" else "Sign in"
    await form.get_by_role("button", name=button, exact=True).click()


async def test_a_signed_out_visitor_of_a_staff_board_is_sent_to_sign_in(
        browser: Browser, shop: Pizza) -> None:
    page = await (await browser.new_context(base_url=shop.process.url)).new_page()
    for board in ("/kitchen", "/delivery", "/pickup", "/mailbox", "/events"):
        await page.goto(board)
        await page.wait_for_url("**/sign-in?next=*")
        assert page.url.endswith("/sign-in?next=" + board.replace("/", "%2F"))


async def test_a_sign_in_link_signs_in_and_leads_on(
        sign_in: Callable[..., Awaitable[Page]], browser: Browser, shop: Pizza) -> None:
    kitchen = await sign_in("kitchen", next="/kitchen")
    assert kitchen.url.endswith("/kitchen")
    await kitchen.get_by_role("button", name="Sign out").click()
    await kitchen.goto("/kitchen")
    await kitchen.wait_for_url("**/sign-in?next=*")

    # The link `pizza token --link` prints leads a driver to the delivery board.
    printed = await asyncio.to_thread(
        subprocess.run, [PIZZA, "token", "--role", "driver", "--link"],
        env=shop.process.env, capture_output=True, text=True, timeout=60, check=True)
    link = printed.stdout.strip()
    assert link.startswith(f"{shop.process.url}/sign-in?next=/delivery#token="), link
    driver = await (await browser.new_context()).new_page()
    await driver.goto(link)
    await driver.wait_for_url(f"{shop.process.url}/delivery", timeout=WAIT_MS)
    assert (await session_of(driver))["roles"] == ["driver"]


async def test_a_bad_token_is_refused_in_words(browser: Browser, shop: Pizza) -> None:
    page = await (await browser.new_context(base_url=shop.process.url)).new_page()
    await page.goto("/sign-in")
    staff = page.get_by_role("region", name="Staff")
    await staff.get_by_role("textbox", name="Token").fill("not-a-token")
    await staff.get_by_role("button", name="Sign in with token").click()
    alert = page.get_by_role("alert")
    await alert.wait_for()
    assert "sign in" in (await alert.inner_text()).lower()


async def test_a_customer_creates_an_account_and_signs_in_with_it(
        browser: Browser, shop: Pizza) -> None:
    context = await browser.new_context(base_url=shop.process.url)
    page = await context.new_page()
    await page.goto("/sign-in?next=%2Fcatalog")
    await account_form(page, "Create an account", "Ada@Example.com", PASSWORD)
    await page.wait_for_url("**/catalog", timeout=WAIT_MS)
    session = await session_of(page)
    assert session["roles"] == ["customer"] and session["customerId"].startswith("c-")
    assert await page.evaluate("() => localStorage.getItem('pizza.email')") == \
        "Ada@Example.com"
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    # The shop knows her by that id: the token the page keeps acts for her.
    asked = await shop.http.get("/api/session", headers={
        "Authorization": f"Bearer {session['token']}"})
    assert asked.json()["customerId"] == session["customerId"]

    # Signed out, and back in another day with the same email and password.
    await page.get_by_role("button", name="Sign out").click()
    await page.goto("/sign-in?next=%2F")
    await account_form(page, "Sign in to your account", "ada@example.com", PASSWORD)
    await page.wait_for_url(shop.process.url + "/", timeout=WAIT_MS)
    again = await session_of(page)
    assert again["customerId"] == session["customerId"]


async def test_a_wrong_password_is_refused_in_words(
        browser: Browser, shop: Pizza, check_a11y: Callable[[Page], Awaitable[None]],
        screenshot: Callable[[Page, str], Awaitable[Any]]) -> None:
    made = await shop.http.post("/api/accounts", json={"email": "bo@example.com",
                                                       "password": PASSWORD})
    assert made.status_code == 201, made.text
    page = await (await browser.new_context(base_url=shop.process.url)).new_page()
    await page.goto("/sign-in?next=%2Fcatalog")
    await check_a11y(page)
    # By keyboard: the email, Tab to the password, Enter submits.
    await page.get_by_role("region", name="Sign in to your account").get_by_label(
        "Email").focus()
    await page.keyboard.type("bo@example.com")
    await page.keyboard.press("Tab")
    await page.keyboard.type("not my password")
    await page.keyboard.press("Enter")
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("do not match an account", timeout=WAIT_MS)
    assert "/sign-in" in page.url and await session_of(page) is None
    await check_a11y(page)
    await screenshot(page, "sign-in")

    # An email with an account already is told to sign in instead.
    await account_form(page, "Create an account", "bo@example.com", PASSWORD)
    await expect(page.get_by_role("alert")).to_contain_text("already an account",
                                                            timeout=WAIT_MS)
    # A short password is explained before anything is sent.
    form = page.get_by_role("region", name="Create an account")
    await form.get_by_label("Email").fill("cy@example.com")
    await form.get_by_label("Password").fill("short")
    await form.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("alert")).to_contain_text("at least 8 characters")
    assert await session_of(page) is None
