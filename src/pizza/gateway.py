"""The one origin of `pizza up` when each service runs in a process of its own.

``http://127.0.0.1:8000`` serves every route of the CONTRACT, as the single-process
system does: the gateway is a FastAPI app with the same routers included (so its
``/openapi.json`` and ``/docs`` are the same document) and the same access gate in front
(tokens, roles, rate limit, security headers), but a request that a service's route
matches is forwarded, as it came, to that service's child process (``supervisor.py``)
and its answer streamed back (Server-Sent Events included). What belongs to no single
service is answered here: ``/api/health`` and ``/metrics`` gather every child's, and the
catalog, the AsyncAPI document and the pages come from the services' declarations.

A child that is down answers nothing: its routes get ``503 unavailable`` with
``Retry-After`` until the supervisor has it back, and the health report shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
from fastapi import FastAPI, Path, Request
from fastapi.responses import Response
from opentelemetry import propagate
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from sse_starlette import EventSourceResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from pizza.eventing import Service, tracing
from pizza.log_limits import without_credentials
from pizza.supervisor import START_SECONDS, Supervisor
from pizza.web.errors import ApiError, error_response

log = logging.getLogger("pizza.gateway")

ASK_SECONDS = 0.6  # a child's /api/health answers within 0.25 s of its own deadline
MAX_FORWARDED_BODY = 1024 * 1024  # every route's own limit is lower (orders: 64 KiB)
RETRY_AFTER = 2
# Headers that belong to one connection, not to the request or answer (RFC 9110, 7.6.1).
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate",
                        b"proxy-authorization", b"te", b"trailer", b"transfer-encoding",
                        b"upgrade", b"host", b"content-length"})
_REPLAY = re.compile(r"/api/admin/replay/([^/]+)")


class Children:
    """The child processes over HTTP: kept-alive connections to each, in two pools.

    ``http`` carries requests, whose answers end; ``streams`` the answers that stay open
    (Server-Sent Events). httpcore's pool (1.0.9) looks at each of its connections
    several times for every request it places (encode/httpcore#1035), so in one pool
    every request paid for every order being followed live: under
    ``pizza simulate --orders 2400 --rate 55`` that scan was 63% of the gateway's samples.
    """

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        # No read timeout: a replay may take long, a stream be quiet for long.
        timeout = httpx.Timeout(30.0, read=None)
        self.http = httpx.AsyncClient(
            timeout=timeout,
            # An idle connection is dropped well before the child's server would close it
            # (uvicorn: 5 s), so a request is never sent down one it is closing.
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100,
                                keepalive_expiry=2.0))
        self.streams = httpx.AsyncClient(
            timeout=timeout,
            # Not kept once a stream ends: streams are long and few reuse a connection.
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=0))

    def url(self, name: str, path: str) -> str:
        return self.supervisor.children[name].url + path

    async def close(self) -> None:
        await self.http.aclose()
        await self.streams.aclose()


class Forward:
    """ASGI middleware: a request that a service's route matches goes to its process."""

    def __init__(self, app: ASGIApp, children: Children,
                 services: Sequence[Service]) -> None:
        self.app = app
        self.children = children
        self.supervisor = children.supervisor
        # (route, its service, whether its answer is a stream)
        self.table = [(route, service.name, _answers_a_stream(route)) for service in services
                      if service.router is not None for route in service.router.routes]

    def _owner(self, scope: Scope) -> tuple[str, bool] | None:
        """The child a request goes to, and whether its answer is a stream; None: the
        gateway's own."""
        for route, name, streams in self.table:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return self.supervisor.child_of.get(name, name), streams
        if scope["path"] == "/api/catalog" and scope["method"] in ("GET", "HEAD"):
            # A child runs a service, so it can ask the broker who reads what
            # (liveConsumers); with none running, the gateway answers from the code.
            running = next((n for n, c in self.supervisor.children.items() if c.running), None)
            return (running, False) if running is not None else None
        replay = _REPLAY.fullmatch(scope["path"])
        if replay and scope["method"] == "POST" and replay.group(1) in self.supervisor.child_of:
            return self.supervisor.child_of[replay.group(1)], False
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        owner = self._owner(scope) if scope["type"] == "http" else None
        if owner is None:
            await self.app(scope, receive, send)
            return
        name, streams = owner
        await self._forward(name, streams, scope, receive, send)

    async def _forward(self, name: str, streams: bool, scope: Scope, receive: Receive,
                       send: Send) -> None:
        body = await _body(receive)
        if body is None:
            await _answer(send, error_response(413, "too-large", "the body is too large"))
            return
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP
                   and k.lower() not in (b"traceparent", b"tracestate")]
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # the gateway's request span, else the client's header
        if not carrier:
            carrier = {k.decode(): v.decode("latin-1") for k, v in scope["headers"]
                       if k.lower() in (b"traceparent", b"tracestate")}
        headers += [(k.encode(), v.encode("latin-1")) for k, v in carrier.items()]
        client = scope.get("client")
        if client:
            headers.append((b"x-forwarded-for", client[0].encode()))
        path = scope["raw_path"].decode("latin-1") if scope.get("raw_path") else scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        http = self.children.streams if streams else self.children.http
        request = http.build_request(
            scope["method"], self.children.url(name, path + (f"?{query}" if query else "")),
            headers=headers, content=body)
        try:
            answer = await http.send(request, stream=True)
        except httpx.TransportError as error:
            log.warning("%s %s: the %s service did not answer (%s)", scope["method"][:16],
                        scope["path"][:100], name, type(error).__name__)
            unavailable = error_response(
                503, "unavailable", f"the {name} service is not answering; try again "
                "shortly")
            unavailable.headers["Retry-After"] = str(RETRY_AFTER)
            await _answer(send, unavailable)
            return
        try:
            await send({"type": "http.response.start", "status": answer.status_code,
                        "headers": [(k, v) for k, v in answer.headers.raw
                                    if k.lower() not in HOP_BY_HOP - {b"content-length"}]})
            await _stream(answer, receive, send)
        finally:
            await answer.aclose()


def _answers_a_stream(route: Any) -> bool:
    """A route whose answer stays open (Server-Sent Events)."""
    answer = getattr(route, "response_class", None)
    return isinstance(answer, type) and issubclass(answer, EventSourceResponse)


async def _body(receive: Receive) -> bytes | None:
    """The request's whole body, or None past MAX_FORWARDED_BODY."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORWARDED_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _stream(answer: httpx.Response, receive: Receive, send: Send) -> None:
    """Copy the answer's body as it comes; stop when the client goes away (a stream of
    Server-Sent Events never ends by itself)."""
    async def copy() -> None:
        async for chunk in answer.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    copying, watching = asyncio.create_task(copy()), asyncio.create_task(gone())
    try:
        await asyncio.wait({copying, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (copying, watching):
            task.cancel()
        await asyncio.gather(copying, watching, return_exceptions=True)
    if copying.done() and not copying.cancelled() and copying.exception() is not None:
        raise copying.exception()  # type: ignore[misc]


async def _answer(send: Send, response: Response) -> None:
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


# -- what the gateway answers itself ------------------------------------------------------


async def _ask_all(children: Children, path: str,
                   headers: dict[str, str] | None = None) -> dict[str, httpx.Response | None]:
    """Ask every child for ``path`` at once; None from one that did not answer in time."""
    async def ask(name: str) -> httpx.Response | None:
        try:  # one deadline for the whole exchange (httpx's timeouts are per phase)
            async with asyncio.timeout(ASK_SECONDS):
                return await children.http.get(children.url(name, path), headers=headers)
        except (httpx.HTTPError, TimeoutError):
            return None

    names = list(children.supervisor.children)
    answers = await asyncio.gather(*(ask(name) for name in names))
    return dict(zip(names, answers, strict=True))


async def _all_answer(children: Children) -> None:
    """Until every child answers its health check (as the single process is ready only
    once its services run), or START_SECONDS: then say which did not, and go on."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_SECONDS
    while True:
        answers = await _ask_all(children, "/api/health")
        silent = [name for name, answer in answers.items()
                  if answer is None or answer.status_code != 200]
        if not silent:
            return
        if loop.time() > deadline:
            log.warning("not answering after %.0f s: %s; serving anyway", START_SECONDS,
                        ", ".join(silent))
            return
        await asyncio.sleep(0.2)


async def health(children: Children) -> dict[str, Any]:
    """Every child's report merged, and each child's process: running or down, restarts."""
    supervisor = children.supervisor
    answers = await _ask_all(children, "/api/health")
    services: dict[str, Any] = {}
    processes: dict[str, Any] = {}
    healthy = supervisor.broker_up
    lags = []
    for name, child in supervisor.children.items():
        answer = answers[name]
        report = answer.json() if answer is not None and answer.status_code == 200 else None
        processes[name] = {"state": child.state if report else "down",
                           "pid": child.process.pid if child.running and child.process
                           else None, "restarts": child.restarts,
                           "loopLagMs": report.get("loopLagMs") if report else None}
        if report is None:
            healthy = False
            services[name] = {"outboxBacklog": None, "database": "unknown", "queues": {}}
            continue
        healthy = healthy and report.get("status") == "ok"
        services.update(report.get("services", {}))
        if report.get("loopLagMs") is not None:
            lags.append(report["loopLagMs"])
    return {"status": "ok" if healthy else "degraded", "services": services,
            "nats": supervisor.nats_url and without_credentials(supervisor.nats_url),
            "processes": processes,
            "loopLagMs": max(lags) if lags else None}


class _Gathered(Collector):
    """The children's metric families as one, each sample labelled with its process."""

    def __init__(self, texts: dict[str, str]) -> None:
        self.texts = texts

    def collect(self) -> Any:
        merged: dict[str, Metric] = {}
        for process, text in self.texts.items():
            for family in text_string_to_metric_families(text):
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(family.name, family.documentation,
                                                        family.type, family.unit)
                for sample in family.samples:
                    into.samples.append(sample._replace(
                        labels={**sample.labels, "process": process}))
        return iter(merged.values())


async def metrics(children: Children, authorization: str | None) -> bytes:
    headers = {"Authorization": authorization} if authorization else None
    answers = await _ask_all(children, "/metrics", headers)
    texts = {name: answer.text for name, answer in answers.items()
             if answer is not None and answer.status_code == 200}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Gathered(texts))
    return generate_latest(registry)


def create_gateway(services: Sequence[Service], supervisor: Supervisor,
                   extras: Any) -> FastAPI:
    """The public app of a `pizza up` whose services run in processes of their own."""
    from pizza.web import shell

    tracing.configure_from_environment("pizza-gateway")  # fails at once, as create_app
    children = Children(supervisor)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await extras.start()
        await supervisor.start()
        try:
            await _all_answer(children)
            log.info("services running in processes of their own: %s; bus at %s",
                     ", ".join(supervisor.children), supervisor.nats_url)
            yield
        finally:
            await children.close()
            await supervisor.stop()
            await extras.stop()

    app = shell.new_app(lifespan)
    app.add_middleware(Forward, children=children, services=services)
    tracing.install_http(app)  # the request's span; forwarded requests carry it on
    shell.guard(app)
    for service in services:
        if service.router is not None:
            app.include_router(service.router)  # for the document and 405s; forwarded

    @app.get("/api/health", tags=["system"])
    async def gateway_health() -> dict[str, Any]:
        """Every service process's health merged; ``processes`` shows each one running
        or down (with its restarts), and ``status`` is degraded while one is down."""
        return await health(children)

    @app.get("/metrics", tags=["system"], response_class=Response)
    async def gateway_metrics(request: Request) -> Response:
        """Every service process's metrics, each sample labelled with its ``process``."""
        body = await metrics(children, request.headers.get("authorization"))
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/api/admin/replay/{service}", status_code=202, tags=["system"],
              responses={404: {"description": "no such service runs here"}})
    async def replay(service: str = Path(max_length=64)) -> dict[str, Any]:
        """Rebuild a service's state from the start of its streams (forwarded to the
        service's process; this entry answers only for a service that does not run)."""
        raise ApiError(404, "not-found", f"no service {service[:64]!r} runs here",
                       {"running": sorted(supervisor.child_of)})

    shell.add_public_routes(app, services)
    return app
