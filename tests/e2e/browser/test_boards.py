"""The staff boards and the operator's mailbox, clicked through in a browser.

Orders come in over the API (as the operator); the kitchen, a driver and the counter
move them on with the boards' buttons, and each board follows without a reload.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from playwright.async_api import Locator, Page, Route
from running_pizza import Pizza, eventually

Screenshot = Callable[[Page, str], Awaitable[Path]]
A11y = Callable[[Page], Awaitable[None]]
SignIn = Callable[..., Awaitable[Page]]


def row(page: Page, stage: str, order_id: str) -> Locator:
    """The order's row in the board's column of ``stage``."""
    return page.locator(f'#col-{stage} [data-order-id="{order_id}"]')


async def never_reloaded(page: Page) -> None:
    """Mark the page; ``still_the_same`` then tells that no reload happened since."""
    await page.evaluate("window.sameBoard = true")


async def still_the_same(page: Page) -> bool:
    return bool(await page.evaluate("window.sameBoard === true"))


async def test_orders_move_across_the_boards_by_clicks_without_reloads(
        shop: Pizza, sign_in: SignIn, check_a11y: A11y, screenshot: Screenshot) -> None:
    to_deliver = await shop.place("ada")
    to_collect = await shop.place("bob", pickup=True)
    to_cancel = await shop.place("cy", pickup=True)
    still_new = await shop.place("dan", pickup=True)  # nobody starts it

    kitchen = await sign_in("kitchen", next="/kitchen")
    lists: list[str] = []  # every read of the ticket list the board makes
    kitchen.on("request", lambda request: lists.append(request.url)
               if request.method == "GET" and "/api/kitchen/tickets" in request.url else None)
    for order_id in (to_deliver, to_collect, to_cancel, still_new):
        await row(kitchen, "new", order_id).wait_for()
    await never_reloaded(kitchen)
    await check_a11y(kitchen)

    # A cancelled order drops off the board by itself.
    assert (await shop.http.post(f"/api/orders/{to_cancel}/cancel")).status_code == 202
    await kitchen.locator(f'[data-order-id="{to_cancel}"]').wait_for(state="detached")

    for order_id in (to_deliver, to_collect):
        await row(kitchen, "new", order_id).get_by_role("button", name="Start cooking").click()
        await row(kitchen, "preparing", order_id).get_by_role(
            "button", name="Prepared").wait_for()
    await row(kitchen, "preparing", to_deliver).get_by_role("button", name="Prepared").click()
    await row(kitchen, "prepared", to_deliver).wait_for()
    assert await row(kitchen, "prepared", to_deliver).get_by_role("button").count() == 0
    await kitchen.locator(f'#history [data-history-id="{to_deliver}"]').wait_for()
    await kitchen.locator("#toast").wait_for(state="hidden")
    await screenshot(kitchen, "kitchen")  # a ticket in each column, one in the history
    await row(kitchen, "preparing", to_collect).get_by_role("button", name="Prepared").click()
    await row(kitchen, "prepared", to_collect).wait_for()
    assert await row(kitchen, "new", still_new).count() == 1

    driver = await sign_in("driver", next="/delivery")
    waiting = row(driver, "awaiting", to_deliver)
    await waiting.wait_for()
    await never_reloaded(driver)
    assert "1 Basil Street" in await waiting.inner_text()
    await waiting.get_by_role("button", name="Out for delivery").click()
    assert "Driver" in await driver.get_by_role("alert").inner_text()  # no name yet
    await driver.get_by_label("Driver").fill("Asha")
    await waiting.get_by_role("button", name="Out for delivery").click()
    on_the_road = row(driver, "out", to_deliver)
    await on_the_road.get_by_text("Driver: Asha").wait_for()
    await check_a11y(driver)
    await driver.locator("#toast").wait_for(state="hidden")
    await screenshot(driver, "delivery")
    await on_the_road.get_by_role("button", name="Delivered").click()
    await row(driver, "delivered", to_deliver).wait_for()
    await shop.reaches(to_deliver, "completed")

    counter = await sign_in("counter", next="/pickup", phone=True)
    await row(counter, "waiting", to_collect).wait_for()
    await never_reloaded(counter)
    assert await counter.evaluate(
        "document.documentElement.scrollWidth <= window.innerWidth"), "fits a phone"
    await check_a11y(counter)
    await screenshot(counter, "pickup")
    await row(counter, "waiting", to_collect).get_by_role("button", name="Collected").click()
    await row(counter, "collected", to_collect).wait_for()
    await counter.locator(f'#history [data-history-id="{to_collect}"]').wait_for()
    await shop.reaches(to_collect, "completed")

    for page in (kitchen, driver, counter):
        assert await still_the_same(page), "the board followed without a reload"
    assert lists and all("limit=" in url for url in lists), "never the whole list"


async def test_a_click_on_a_stale_row_says_in_words_that_it_moved_on(
        shop: Pizza, sign_in: SignIn) -> None:
    order_id = await shop.place("dee", pickup=True)
    kitchen = await sign_in("kitchen", next="/kitchen")
    await row(kitchen, "new", order_id).wait_for()

    async def offline(route: Route) -> None:
        await route.abort()

    # The board stops hearing from the shop while someone else finishes the ticket.
    await kitchen.route("**/api/kitchen/tickets?*", offline)
    await kitchen.get_by_role("status").filter(has_text="Not up to date").wait_for()
    moved = await shop.http.post(f"/api/kitchen/tickets/{order_id}/prepared")
    assert moved.status_code == 202
    await row(kitchen, "new", order_id).get_by_role("button", name="Start cooking").click()
    alert = kitchen.get_by_role("alert")
    await alert.filter(has_text="already moved on").wait_for()
    assert "prepared" in await alert.inner_text()

    await kitchen.unroute("**/api/kitchen/tickets?*", offline)
    await row(kitchen, "prepared", order_id).wait_for()
    assert await kitchen.get_by_role("status").filter(has_text="Not up to date").count() == 0


async def test_the_operator_finds_an_orders_emails_in_the_mailbox(
        shop: Pizza, sign_in: SignIn, check_a11y: A11y, screenshot: Screenshot) -> None:
    for who in ("erin", "fay", "gus"):
        await shop.place(who, pickup=True)
    operator = await sign_in("operator", next="/mailbox")
    rows = operator.locator("#mail-rows tr.mail")
    await rows.nth(2).wait_for()  # the receipts arrive on the page by themselves

    await operator.get_by_label("Search").fill("FAY@example")
    await operator.get_by_role("button", name="Search").click()
    await operator.wait_for_url("**/mailbox?q=FAY%40example")
    await rows.first.wait_for()
    assert set(await rows.evaluate_all("rs => rs.map(r => r.dataset.to)")) == {
        "fay@example.com"}

    subject = rows.first.get_by_role("button")
    await subject.click()
    assert await subject.get_attribute("aria-expanded") == "true"
    body = operator.locator("#mail-rows .mail-body").first
    await body.wait_for()
    assert (await body.inner_text()).strip()
    await check_a11y(operator)
    await screenshot(operator, "mailbox")

    await operator.get_by_label("Search").fill("nobody-ordered@nowhere")
    await operator.get_by_role("button", name="Search").click()
    await operator.get_by_text("No email matching").wait_for()
    assert await rows.count() == 0


async def test_history_and_mailbox_page_older_and_newer(
        shop: Pizza, sign_in: SignIn) -> None:
    orders = [await shop.place(f"h{n}", pickup=True) for n in range(12)]

    async def all_in(path: str) -> bool:
        listed = {item["orderId"] for item in (await shop.http.get(path)).json()}
        return listed >= set(orders)

    await eventually(lambda: all_in("/api/kitchen/tickets?stage=new"))
    for order_id in orders:
        assert (await shop.http.post(f"/api/kitchen/tickets/{order_id}/prepared")
                ).status_code == 202
    await eventually(lambda: all_in("/api/pickup/orders"))
    for order_id in orders:
        assert (await shop.http.post(f"/api/pickup/orders/{order_id}/collected")
                ).status_code == 202

    counter = await sign_in("counter", next="/pickup")
    history = counter.locator("#history [data-history-id]")
    await counter.locator(f'#history [data-history-id="{orders[-1]}"]').wait_for()
    assert await history.count() == 10
    lately = counter.locator("#col-collected [data-order-id]")
    await lately.nth(7).wait_for()
    assert await lately.count() == 8, "the latest few finished; the rest in the history"
    await counter.get_by_role("button", name="Older").click()
    await counter.locator(f'#history [data-history-id="{orders[0]}"]').wait_for()
    assert await history.evaluate_all("rs => rs.map(r => r.dataset.historyId)") == [
        orders[1], orders[0]]
    assert await counter.get_by_role("button", name="Older").is_disabled()
    await counter.get_by_role("button", name="Newer").click()
    await counter.locator(f'#history [data-history-id="{orders[-1]}"]').wait_for()
    assert await counter.get_by_role("button", name="Newer").is_disabled()

    async def every_email() -> bool:  # a receipt and a thank-you per order
        return len((await shop.http.get("/api/mailbox")).json()) >= 2 * len(orders)

    await eventually(every_email)
    operator = await sign_in("operator", next="/mailbox", phone=True)
    rows = operator.locator("#mail-rows tr.mail")
    await rows.nth(19).wait_for()
    assert await rows.count() == 20
    await operator.get_by_role("button", name="Older").click()
    await operator.get_by_text("Page 2").wait_for()
    assert await rows.count() == 2 * len(orders) - 20
    assert await operator.evaluate(
        "document.documentElement.scrollWidth <= window.innerWidth"), "fits a phone"
    await operator.get_by_role("button", name="Newer").click()
    await operator.get_by_text("Page 1").wait_for()
    await rows.nth(19).wait_for()
