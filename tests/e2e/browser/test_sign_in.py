"""Signing in to the web app, and staff boards closed to those signed out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from playwright.async_api import Browser, Page
from running_pizza import Pizza


async def test_a_signed_out_visitor_of_a_staff_board_is_sent_to_sign_in(
        browser: Browser, shop: Pizza) -> None:
    page = await (await browser.new_context(base_url=shop.process.url)).new_page()
    for board in ("/kitchen", "/delivery", "/pickup", "/mailbox", "/events"):
        await page.goto(board)
        await page.wait_for_url("**/sign-in?next=*")
        assert page.url.endswith("/sign-in?next=" + board.replace("/", "%2F"))


async def test_a_sign_in_link_signs_in_and_leads_on(
        sign_in: Callable[..., Awaitable[Page]]) -> None:
    kitchen = await sign_in("kitchen", next="/kitchen")
    assert kitchen.url.endswith("/kitchen")
    await kitchen.get_by_role("button", name="Sign out").click()
    await kitchen.goto("/kitchen")
    await kitchen.wait_for_url("**/sign-in?next=*")


async def test_a_bad_token_is_refused_in_words(browser: Browser, shop: Pizza) -> None:
    page = await (await browser.new_context(base_url=shop.process.url)).new_page()
    await page.goto("/sign-in")
    await page.get_by_role("textbox", name="Token").fill("not-a-token")
    await page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    await alert.wait_for()
    assert "sign in" in (await alert.inner_text()).lower()
