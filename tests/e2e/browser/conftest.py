"""Browser tests: the web app driven by clicks in Debian's Chromium through Playwright.

Each test starts its own ``pizza up`` (``start_pizza``) and opens a browser context per
person, signed in through the real sign-in page with a link whose fragment carries a
token from the system's own issuer (``/sign-in?next=...#token=...``). ``check_a11y``
runs axe-core in the page; ``screenshot`` keeps a picture of the page under
``$PIZZA_SCREENSHOTS`` (the README's pictures come from there) or the test's tmp dir.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
from running_pizza import Pizza

from pizza.web.identity import issue_token

CHROMIUM = os.environ.get("PIZZA_CHROMIUM", "/usr/bin/chromium")
EXECUTABLE = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")

pytestmark = pytest.mark.e2e

# How long a page may take to show what a test waits for. Whole systems start and run
# beside each other on a shared 2-core machine: patience is not a timing goal.
PATIENCE_MS = 60_000
expect.set_options(timeout=30_000)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if EXECUTABLE is None:
        skip = pytest.mark.skip(reason=f"Chromium is not installed at {CHROMIUM} "
                                "(apt-get install chromium): browser tests skip")
        for item in items:
            if "browser" in str(item.fspath):
                item.add_marker(skip)


@pytest.fixture
async def browser(shop: Pizza) -> AsyncIterator[Browser]:
    """Chromium, started after the test's system and closed before it stops: a page's
    open event streams would otherwise hold up the system's clean stop."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=EXECUTABLE,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        opened = launched.new_context

        async def new_context(**options: Any) -> BrowserContext:
            context = await opened(**options)
            context.set_default_timeout(PATIENCE_MS)
            return context

        launched.new_context = new_context  # type: ignore[method-assign]
        yield launched
        await launched.close()


@pytest.fixture
async def shop(start_pizza: Callable[..., Awaitable[Pizza]]) -> Pizza:
    """``pizza up`` with no simulation: the people in the browser do the work."""
    return await start_pizza()


def home_of(shop: Pizza) -> Path:
    return Path(shop.process.env["PIZZA_HOME"])


@pytest.fixture
def sign_in(browser: Browser, shop: Pizza) -> Callable[..., Awaitable[Page]]:
    """A new browser context (its own storage: one person) signed in as ``role``, on
    ``next`` (the page the sign-in link leads to)."""

    async def open_as(role: str, next: str = "/", customer: str | None = None,
                      phone: bool = False) -> Page:
        options: dict[str, object] = {"base_url": shop.process.url}
        if phone:
            options.update(viewport={"width": 390, "height": 844}, is_mobile=True,
                           has_touch=True)
        context = await browser.new_context(**options)  # type: ignore[arg-type]
        page = await context.new_page()
        token = issue_token(role, customer, home=home_of(shop), ttl=3600)
        await page.goto(f"/sign-in?next={quote(next)}#token={token}")
        await page.wait_for_url(f"**{next}")
        return page

    return open_as


@pytest.fixture
def check_a11y() -> Callable[[Page], Awaitable[None]]:
    """Fail on any serious or critical axe-core violation on the page as it is now."""
    axe = Axe()

    async def check(page: Page) -> None:
        results = await axe.run(page)
        bad = [v for v in results.response["violations"]
               if v.get("impact") in ("serious", "critical")]
        assert not bad, "\n".join(
            f"{v['id']} ({v['impact']}): {v['help']}: "
            + "; ".join(n["target"][0] if n.get("target") else "?" for n in v["nodes"][:5])
            for v in bad)

    return check


@pytest.fixture
def screenshot(tmp_path: Path) -> Callable[[Page, str], Awaitable[Path]]:
    """Keep a full-page PNG named ``name`` (the README shows $PIZZA_SCREENSHOTS's)."""
    folder = Path(os.environ.get("PIZZA_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)

    async def take(page: Page, name: str) -> Path:
        path = folder / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    return take
