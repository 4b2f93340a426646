"""The web app: a page per person at the counter, served by ``pizza up`` at one origin.

Pages are Jinja2 templates (``web/templates``) with a little plain JavaScript and one
stylesheet (``web/static``); every asset is served from the package, Swagger UI's too,
so the app works offline and needs no build step. Pages hold no data when served: the
browser signs in (``/sign-in``), keeps its bearer token, and talks to the same public
HTTP API as any other client (CONTRACT.md section 2), so a page can show nothing that
its visitor's token may not read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from pizza import config

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


@dataclass(frozen=True)
class Page:
    path: str
    template: str
    title: str
    roles: tuple[str, ...] = ()  # who the page is for; empty: anyone (the page says so)
    nav: bool = True  # listed in the header


PAGES: tuple[Page, ...] = (
    Page("/", "customer.html", "Order"),
    Page("/orders/{order_id}", "order.html", "Your order", nav=False),
    Page("/kitchen", "kitchen.html", "Kitchen", ("kitchen", "operator")),
    Page("/delivery", "delivery.html", "Delivery", ("driver", "operator")),
    Page("/pickup", "pickup.html", "Pickup", ("counter", "operator")),
    Page("/mailbox", "mailbox.html", "Mailbox", ("operator",)),
    Page("/events", "events.html", "Events", ("operator",)),
    Page("/catalog", "catalog.html", "Catalog"),
    Page("/sign-in", "sign_in.html", "Sign in", nav=False),
)


def install(app: FastAPI) -> None:
    """Every page, the static assets and the offline API documentation on ``app``."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/static/swagger-ui", StaticFiles(directory=swagger_ui_path),
              name="swagger-ui")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for page in PAGES:
        app.add_api_route(page.path, _render(page), methods=["GET"],
                          response_class=HTMLResponse, include_in_schema=False)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="Plant-Based Pizza: HTTP API",
            swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/swagger-ui/favicon-32x32.png")


def _render(page: Page) -> Callable[[Request], Awaitable[HTMLResponse]]:
    async def render(request: Request) -> HTMLResponse:
        return templates.TemplateResponse(request, page.template, {
            "page": page, "pages": [p for p in PAGES if p.nav],
            "params": request.path_params,
            "oidc": bool(config.settings().oidc_issuer),  # sign-in: the provider's tokens
        })

    render.__name__ = f"page_{page.template.removesuffix('.html')}"
    return render
