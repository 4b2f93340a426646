"""The /catalog page: the event catalog, and the event-storming board drawn from it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from playwright.async_api import Browser, Locator, Page
from running_pizza import Pizza


async def open_catalog(browser: Browser, shop: Pizza, **options: object) -> Page:
    """The page as a visitor who is not signed in sees it: it is for anyone."""
    context = await browser.new_context(base_url=shop.process.url, **options)  # type: ignore[arg-type]
    page = await context.new_page()
    await page.goto("/catalog")
    await page.get_by_role("heading", name="OrderConfirmed", exact=True).wait_for()
    await page.locator(".flow").first.wait_for()
    return page


def version_card(page: Page, message: str, version: int) -> Locator:
    article = page.get_by_role("article").filter(
        has=page.get_by_role("heading", name=message, exact=True))
    return article.locator(f'[data-message="{message}.v{version}"]')


def flow_of(page: Page, command: str) -> Locator:
    """The board's flow (an ordered list of sticky notes) that starts with ``command``."""
    return page.get_by_role("list").filter(has_text=command).filter(
        has=page.get_by_role("listitem").filter(has_text="Actor"))


async def test_the_catalog_lists_both_order_confirmed_versions_and_the_deprecation(
        browser: Browser, shop: Pizza, check_a11y: Callable[[Page], Awaitable[None]],
        screenshot: Callable[[Page, str], Awaitable[Path]]) -> None:
    page = await open_catalog(browser, shop, viewport={"width": 1600, "height": 1000})
    v1, v2 = version_card(page, "OrderConfirmed", 1), version_card(page, "OrderConfirmed", 2)
    assert "Deprecated, sunset 20" in await v1.get_by_role("heading").inner_text()
    assert "Current" in await v2.get_by_role("heading").inner_text()
    assert "kitchen" in await v1.inner_text()  # its consumer, declared and live
    assert "tracking" in await v2.inner_text()
    live = v2.locator("dt", has_text="Live consumers").locator("xpath=following-sibling::dd[1]")
    # Asked of the broker by a service's process, with one process or a process per service.
    assert "tracking" in await live.inner_text(), "the running services announced it"

    schema = v2.get_by_role("group")  # <details>
    await schema.get_by_text("JSON Schema of OrderConfirmed v2").click()
    assert '"orderValue"' in await schema.locator("pre").inner_text()

    await check_a11y(page)
    await screenshot(page, "catalog")


async def test_the_board_leads_from_placing_an_order_to_order_confirmed(
        browser: Browser, shop: Pizza, check_a11y: Callable[[Page], Awaitable[None]],
        screenshot: Callable[[Page, str], Awaitable[Path]]) -> None:
    page = await open_catalog(browser, shop, viewport={"width": 2600, "height": 1200})
    placing = flow_of(page, "POST /api/orders")
    notes = [" ".join(text.split()) for text in
             await placing.get_by_role("listitem").all_inner_texts()]
    assert notes[:3] == ["ACTOR customer", "COMMAND Place order POST /api/orders",
                         "SERVICE orders Takes, cancels and completes orders; the core domain."]
    confirmed = [i for i, note in enumerate(notes) if note.startswith("EVENT OrderConfirmed")]
    assert len(confirmed) == 2 and "Deprecated" in notes[confirmed[0]]
    # The notes come in the tree's order: v2 is followed by tracking's reaction.
    assert notes[confirmed[1] + 1].startswith("POLICY tracking:")
    colours = await placing.get_by_role("listitem").evaluate_all(
        "items => items.map(i => getComputedStyle(i).backgroundColor)")
    assert len({colours[0], colours[1], colours[confirmed[0]]}) == 3, "workshop colours"

    legend = await page.get_by_role("list", name="Legend").inner_text()
    assert "Orange (event)" in legend and "Blue (command)" in legend
    await check_a11y(page)
    board = page.get_by_role("region", name="Sticky notes of the board")
    picture = await screenshot(page, "event-storming")  # then only the board, wide
    await board.screenshot(path=str(picture))


async def test_on_a_phone_the_board_scrolls_sideways_and_the_page_does_not(
        browser: Browser, shop: Pizza, check_a11y: Callable[[Page], Awaitable[None]]) -> None:
    page = await open_catalog(browser, shop, viewport={"width": 390, "height": 844},
                              is_mobile=True, has_touch=True)
    board = page.get_by_role("region", name="Sticky notes of the board")
    assert await board.evaluate("b => b.scrollWidth > b.clientWidth")
    assert await page.evaluate(
        "document.documentElement.scrollWidth <= window.innerWidth + 1")
    await check_a11y(page)
