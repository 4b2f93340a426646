"""The whole story by clicking: a customer orders one delivery and one pickup on /, and
the kitchen, a driver and the counter move them on from their boards, each person in a
browser context of their own. The customer's tracking pages follow every step live and
reach "completed" without a reload."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Locator, Page, expect
from running_pizza import Pizza
from test_customer import place_order

SignIn = Callable[..., Awaitable[Page]]
WAIT_MS = 30_000
MARK = "window.pizzaStoryMark"


async def watch(page: Page) -> list[str]:
    """Mark the page and note every navigation of it from now: a reload would lose the
    mark, and a navigation would be listed."""
    await expect(page.locator("#order-status")).to_have_text("confirmed", timeout=WAIT_MS)
    await page.evaluate(f"{MARK} = 'no reload'")
    navigations: list[str] = []
    page.on("framenavigated",
            lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    return navigations


def row(board: Page, order_id: str) -> Locator:
    return board.locator(f'[data-order-id="{order_id}"]')


async def click(board: Page, order_id: str, button: str) -> None:
    """Press ``button`` on the order's row, once the board shows the row with it."""
    target = row(board, order_id).get_by_role("button", name=button, exact=True)
    await expect(target).to_be_visible(timeout=WAIT_MS)
    await target.click()


async def shows(customer: Page, pattern: str) -> None:
    await expect(customer.locator("#order-status")).to_have_text(
        re.compile(f"^({pattern})$"), timeout=WAIT_MS)


async def completed_without_reload(customer: Page, navigations: list[str]) -> None:
    await shows(customer, "completed")
    await expect(customer.locator('.progress [aria-current="step"]')).to_have_text("Completed")
    await expect(customer.locator("#details")).to_contain_text(
        "23 points added for this order", timeout=WAIT_MS)
    await expect(customer.get_by_text("Thank-you note:")).to_be_visible(timeout=WAIT_MS)
    await expect(customer.get_by_role("button", name="Cancel order")).to_be_hidden()
    assert await customer.evaluate(MARK) == "no reload"
    assert navigations == []


@pytest.mark.timeout(300)  # five browsers and a whole system on a shared machine
async def test_a_delivery_and_a_pickup_go_the_whole_way_by_clicking(
        sign_in: SignIn, shop: Pizza, check_a11y: Callable[[Page], Awaitable[None]],
        screenshot: Callable[[Page, str], Awaitable[Path]]) -> None:
    customer = await sign_in("customer", customer="ada")
    kitchen = await sign_in("kitchen", next="/kitchen")
    driver = await sign_in("driver", next="/delivery")
    counter = await sign_in("counter", next="/pickup")

    # Ada orders twice, each order followed in a tab of its own.
    delivery = await place_order(customer, "delivery")
    delivery_seen = await watch(customer)
    pickup_tab = await customer.context.new_page()
    await pickup_tab.goto("/")
    pickup = await place_order(pickup_tab, "pickup")
    pickup_seen = await watch(pickup_tab)

    # The delivery: cooked, driven out, handed over.
    await click(kitchen, delivery, "Start cooking")
    await shows(customer, "preparing")
    await click(kitchen, delivery, "Prepared")
    await shows(customer, "prepared")
    driver_box = row(driver, delivery).get_by_label("Driver")
    if not await driver_box.count():  # one box for the whole board
        driver_box = driver.get_by_label("Driver", exact=True)
    await driver_box.fill("Grace")
    await click(driver, delivery, "Out for delivery")
    await shows(customer, "out-for-delivery")
    await click(driver, delivery, "Delivered")
    await shows(customer, "delivered|completed")
    await completed_without_reload(customer, delivery_seen)
    await check_a11y(customer)
    await screenshot(customer, "order-tracking")

    # The pickup: cooked, put on the counter, collected.
    await click(kitchen, pickup, "Start cooking")
    await shows(pickup_tab, "preparing")
    await click(kitchen, pickup, "Prepared")
    await shows(pickup_tab, "prepared|ready-for-collection")
    await click(counter, pickup, "Collected")
    await shows(pickup_tab, "collected|completed")
    await completed_without_reload(pickup_tab, pickup_seen)

    # The shop agrees: both completed, and Ada has her points.
    for order_id in (delivery, pickup):
        assert (await shop.http.get(f"/api/orders/{order_id}")).json()["status"] == "completed"
    points = (await shop.http.get("/api/loyalty/ada")).json()["points"]
    assert points == 2 * 23  # each order £23.50: a point per whole pound
