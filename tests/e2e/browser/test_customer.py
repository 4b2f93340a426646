"""The customer's pages by clicking: ordering on /, following it on /orders/{id},
cancelling, mistakes explained in words, and a phone-sized screen."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, Route, expect
from playwright.async_api import TimeoutError as PlaywrightTimeout
from running_pizza import Pizza, eventually

SignIn = Callable[..., Awaitable[Page]]
WAIT_MS = 30_000


async def fill_order(page: Page, fulfilment: str, email: str = "ada@example.com") -> None:
    """Choose from the menu, give an email and say how it reaches the customer."""
    await page.get_by_label("Margherita").fill("2")
    await page.get_by_label("Garlic Bread").fill("1")
    await page.get_by_label("Email").fill(email)
    if fulfilment == "delivery":
        await page.get_by_role("radio", name="Delivery").check()
        await page.get_by_label("Address line 1").fill("1 Leaf Lane")
        await page.get_by_label("Town or city").fill("Bristol")
        await page.get_by_label("Postcode").fill("bs1 4dj")
    else:
        await page.get_by_role("radio", name="Pickup").check()


async def place_order(page: Page, fulfilment: str) -> str:
    """Place an order on / by clicking; the id of the order its tracking page follows."""
    await fill_order(page, fulfilment)
    await page.get_by_role("button", name="Place order").click()
    try:
        await page.wait_for_url("**/orders/*", timeout=WAIT_MS)
    except PlaywrightTimeout:
        said = await page.get_by_role("alert").all_inner_texts()
        raise AssertionError(f"the order page never came; the page says {said}") from None
    return page.url.rsplit("/", 1)[1]


async def orders_of(shop: Pizza, customer: str) -> list[dict[str, Any]]:
    answer = await shop.http.get("/api/orders", params={"customerId": customer})
    assert answer.status_code == 200
    listed: list[dict[str, Any]] = answer.json()
    return listed


async def test_a_customer_orders_and_follows_the_order(
        sign_in: SignIn, shop: Pizza, check_a11y: Callable[[Page], Awaitable[None]],
        screenshot: Callable[[Page, str], Awaitable[Path]]) -> None:
    page = await sign_in("customer", customer="ada")
    await expect(page.get_by_label("Margherita")).to_be_visible()
    await fill_order(page, "delivery")
    await expect(page.locator("#total")).to_have_text("£23.50")  # 2 x 9.50 + 4.50
    await check_a11y(page)
    await screenshot(page, "customer")

    await page.get_by_role("button", name="Place order").click()
    await page.wait_for_url("**/orders/*")
    order_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator("#order-status")).to_have_text("confirmed", timeout=WAIT_MS)
    await expect(page.locator('.progress [aria-current="step"]')).to_have_text("Confirmed")
    await expect(page.get_by_text("Receipt:")).to_be_visible(timeout=WAIT_MS)
    await expect(page.get_by_role("button", name="Cancel order")).to_be_visible()
    await check_a11y(page)

    # The shop has exactly that order, for Ada, by delivery, for what the page showed.
    [order] = await orders_of(shop, "ada")
    assert (order["orderId"], order["fulfilment"], order["value"]) == (
        order_id, "delivery", 23.5)

    # Back on /, "Your orders" leads to it, and the email is remembered.
    await page.goto("/")
    link = page.get_by_role("link", name=f"Order {order_id.split('-')[0]}")
    await link.click()
    await page.wait_for_url(f"**/orders/{order_id}")
    await page.goto("/")
    await expect(page.get_by_label("Email")).to_have_value("ada@example.com")


async def test_cancelling_a_fresh_order(sign_in: SignIn, shop: Pizza) -> None:
    page = await sign_in("customer", customer="ada")
    order_id = await place_order(page, "pickup")
    await expect(page.locator("#order-status")).to_have_text("confirmed", timeout=WAIT_MS)
    await page.get_by_role("button", name="Cancel order").click()
    await expect(page.locator("#order-status")).to_have_text("cancelled", timeout=WAIT_MS)
    await expect(page.get_by_role("button", name="Cancel order")).to_be_hidden()
    await expect(page.get_by_text("Cancellation notice:")).to_be_visible(timeout=WAIT_MS)
    answer = await shop.http.get(f"/api/orders/{order_id}")
    assert answer.json()["status"] == "cancelled"


async def test_a_late_cancel_is_explained(sign_in: SignIn, shop: Pizza) -> None:
    """The page has not heard yet that the kitchen finished (its view is stale): the
    shop refuses the cancel, and the customer is told why in words."""
    placed = await shop.http.post("/api/orders", json={
        "customerId": "ada", "email": "ada@example.com", "fulfilment": "pickup",
        "items": [{"menuItemId": "funghi", "quantity": 1}]})
    order_id = placed.json()["orderId"]

    async def confirmed() -> bool:
        answer = await shop.http.get(f"/api/orders/{order_id}")
        return answer.status_code == 200

    await eventually(confirmed)
    page = await sign_in("customer", customer="ada")
    first: dict[str, str] = {}

    async def stale(route: Route) -> None:  # the first answer, for ever
        if "body" not in first:
            answer = await route.fetch()
            first["body"] = await answer.text()
        await route.fulfill(status=200, body=first["body"], content_type="application/json")

    await page.route(f"**/api/orders/{order_id}", stale)
    await page.route(f"**/api/orders/{order_id}/stream*", lambda route: route.abort())
    await page.goto(f"/orders/{order_id}")
    await expect(page.locator("#order-status")).to_have_text("confirmed", timeout=WAIT_MS)

    for step in ("kitchen/tickets/{}/start", "kitchen/tickets/{}/prepared",
                 "pickup/orders/{}/collected"):
        await eventually(_accepted(shop, "/api/" + step.format(order_id)))

    async def completed() -> bool:  # orders completed it: it knows the kitchen finished
        answer = await shop.http.get(f"/api/orders/{order_id}")
        return bool(answer.json()["status"] == "completed")

    await eventually(completed)
    await page.get_by_role("button", name="Cancel order").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_have_text(
        "The kitchen has already finished your order, so it can no longer be cancelled.")
    await expect(page.get_by_role("button", name="Cancel order")).to_be_hidden()


def _accepted(shop: Pizza, path: str) -> Callable[[], Awaitable[bool]]:
    """A staff step, tried until its service has the order (it hears of it by events)."""
    async def attempt() -> bool:
        return (await shop.http.post(path)).status_code == 202
    return attempt


async def test_mistakes_are_explained_and_nothing_typed_is_lost(
        sign_in: SignIn, shop: Pizza) -> None:
    page = await sign_in("customer", customer="ada")
    await expect(page.get_by_label("Margherita")).to_be_visible()
    await page.get_by_role("button", name="Place order").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("Choose something from the menu")
    await expect(alert).to_contain_text("email address")

    await fill_order(page, "delivery", email="ada-at-example")
    await page.get_by_label("Postcode").fill("not a postcode")
    await page.get_by_role("button", name="Place order").click()
    await expect(alert).to_contain_text("email address, like name@example.com")
    await expect(alert).to_contain_text("UK postcode")
    await expect(page.get_by_label("Postcode")).to_have_attribute("aria-invalid", "true")
    # What was typed is still there.
    await expect(page.get_by_label("Margherita")).to_have_value("2")
    await expect(page.get_by_label("Address line 1")).to_have_value("1 Leaf Lane")
    await expect(page.get_by_label("Email")).to_have_value("ada-at-example")
    assert page.url.endswith("/")
    assert await orders_of(shop, "ada") == []


async def test_a_lost_answer_and_a_second_press_make_one_order(
        sign_in: SignIn, shop: Pizza) -> None:
    page = await sign_in("customer", customer="ada")
    await expect(page.get_by_label("Margherita")).to_be_visible()
    await fill_order(page, "delivery")

    async def lose_the_answer(route: Route) -> None:  # the shop takes it; the reply is lost
        await route.fetch()
        await route.abort("connectionreset")

    await page.route("**/api/orders", lose_the_answer)
    await page.get_by_role("button", name="Place order").click()
    await expect(page.get_by_role("alert")).to_contain_text("cannot reach the shop")
    await page.unroute("**/api/orders")
    await page.get_by_role("button", name="Place order").click()
    await page.wait_for_url("**/orders/*")
    order_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator("#order-status")).to_have_text("confirmed", timeout=WAIT_MS)
    assert [o["orderId"] for o in await orders_of(shop, "ada")] == [order_id]


async def test_who_may_order(browser: Browser, shop: Pizza, sign_in: SignIn) -> None:
    """A visitor signed out, or signed in as staff, is asked to sign in as a customer; an
    operator may order for a customer id they type."""
    page = await (await browser.new_context(base_url=shop.process.url)).new_page()
    await page.goto("/")
    link = page.get_by_role("link", name="Sign in to order")
    await expect(link).to_have_attribute("href", "/sign-in?next=/")

    kitchen = await sign_in("kitchen")
    await expect(kitchen.get_by_text("orders are placed by customers")).to_be_visible()
    await expect(kitchen.get_by_role("link", name="Sign in to order")).to_be_visible()

    operator = await sign_in("operator")
    await operator.get_by_label("Customer id").fill("bob")
    order_id = await place_order(operator, "pickup")
    await expect(operator.locator("#order-status")).to_have_text("confirmed", timeout=WAIT_MS)
    assert [o["orderId"] for o in await orders_of(shop, "bob")] == [order_id]


async def test_a_phone_sized_screen_has_no_sideways_scrolling(
        sign_in: SignIn, check_a11y: Callable[[Page], Awaitable[None]]) -> None:
    page = await sign_in("customer", customer="ada", phone=True)
    await expect(page.get_by_label("Margherita")).to_be_visible()
    await fill_order(page, "delivery")
    assert await _fits(page)
    await page.get_by_role("button", name="Place order").click()
    await page.wait_for_url("**/orders/*")
    await expect(page.locator("#order-status")).to_have_text("confirmed", timeout=WAIT_MS)
    await expect(page.get_by_text("Receipt:")).to_be_visible(timeout=WAIT_MS)
    assert await _fits(page)
    await check_a11y(page)


async def _fits(page: Page) -> bool:
    fits: bool = await page.evaluate(
        "document.documentElement.scrollWidth <= window.innerWidth")
    return fits


async def test_an_order_the_query_side_has_not_seen_yet_is_confirming(
        sign_in: SignIn, shop: Pizza) -> None:
    placed = await shop.http.post("/api/orders", json={
        "customerId": "ada", "email": "ada@example.com", "fulfilment": "pickup",
        "items": [{"menuItemId": "cola", "quantity": 1}]})
    order_id = placed.json()["orderId"]
    page = await sign_in("customer", customer="ada")
    unseen = {"answers": 3}

    async def not_yet(route: Route) -> None:  # the query side a moment behind
        if unseen["answers"] > 0:
            unseen["answers"] -= 1
            await route.fulfill(status=404, content_type="application/json", body=(
                '{"error": {"code": "not-found", "message": "no order (yet)"}}'))
        else:
            await route.continue_()

    await page.route(f"**/api/orders/{order_id}", not_yet)
    await page.goto(f"/orders/{order_id}")
    waiting = page.get_by_text("Confirming your order")
    await expect(waiting).to_be_visible()
    await expect(page.locator("#order-status")).to_have_text("confirmed", timeout=WAIT_MS)
    await expect(waiting).to_be_hidden()
    assert unseen["answers"] == 0
