"""HTTP requests in Prometheus terms, and the ``GET /metrics`` answer.

A plain ASGI middleware (no per-request objects of Starlette's ``BaseHTTPMiddleware``,
and streaming answers such as Server-Sent Events pass straight through). A request is
labelled with its route *template* (``/api/orders/{order_id}``), never the raw path: ids
in paths would make a new series per order. A request that matched no route is
``route="unmatched"``; a method outside the usual ones is ``method="other"``.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pizza.eventing.metrics import RuntimeMetrics

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


class HttpMetrics:
    """The request counter and latency histogram, in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "pizza_http_requests", "HTTP requests answered, by route template, method and "
            "status.", ("route", "method", "status"), registry=registry)
        self.seconds = Histogram(
            "pizza_http_request_duration_seconds", "Time from a request's arrival to the "
            "end of its answer (a stream: until it closes), by route template and method.",
            ("route", "method"), registry=registry)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.seconds.labels(route, method).observe(seconds)


class MeasureRequests:
    """ASGI middleware: count and time every HTTP request by its route template."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before starting one

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method = scope.get("method", "")
            self.metrics.observe(route_template(scope),
                                 method if method in METHODS else "other", status,
                                 time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The path template of the route that answered (set in the scope by the router)."""
    route: Any = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


def install(app: Any, runtime_metrics: RuntimeMetrics) -> None:
    """Measure ``app``'s requests into the runtime's registry."""
    app.add_middleware(MeasureRequests, metrics=HttpMetrics(runtime_metrics.registry))


async def scrape(request: Request, runtime_metrics: RuntimeMetrics) -> Response:
    """The registry in Prometheus's text format (or what the Accept header asks for)."""
    body, content_type = await runtime_metrics.exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)
