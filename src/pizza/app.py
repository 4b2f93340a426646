"""The composition root: wires the services to the bus, their databases, and one web app.

``pizza up`` runs every service in one process (a modular monolith, as the talk says to
start) with the embedded broker, the SMTP sink and the simulated loyalty SaaS;
``pizza serve NAME`` runs one service alone. The services' code is the same in both: this
module is the only place that knows them all.

Each service package has a factory, ``create(settings)``, that builds its Service from
the settings it is given (nothing is made when a package is imported). The settings are
made final first (``Extras.settle``: where the SMTP sink and the loyalty SaaS will be),
then the services are built from them (``load``), then an app runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.responses import PlainTextResponse, Response

from pizza import config
from pizza.eventing import Service, tracing
from pizza.eventing.errors import NotFound
from pizza.eventing.host import Runtime
from pizza.eventing.transport.embedded import free_port
from pizza.log_limits import without_credentials
from pizza.web import metrics as web_metrics
from pizza.web import shell

log = logging.getLogger("pizza")

HEALTH_WAIT = 0.25  # seconds: a dependency that is away must not hold up the health check

SERVICES = ("orders", "kitchen", "delivery", "pickup", "loyalty", "notifications", "tracking")


def load(names: Sequence[str] = SERVICES,
         settings: config.Settings | None = None) -> list[Service]:
    """The named services, each made by its package's factory from ``settings`` (by
    default the environment's, ``config.settings()``): a new set at every call."""
    unknown = [name for name in names if name not in SERVICES]
    if unknown:
        raise ValueError(f"unknown service {', '.join(unknown)}: choose from "
                         f"{', '.join(SERVICES)}")
    current = settings if settings is not None else config.settings()
    return [importlib.import_module(f"pizza.services.{name}").create(current)
            for name in names]


@dataclass
class Extras:
    """The outside world `pizza up` brings along: an SMTP sink and the loyalty SaaS.

    ``settle(settings)`` chooses where they will be, before any service is made from the
    settings; ``start()`` (when the app starts) starts the SaaS there.
    """

    smtp_sink: bool = False
    loyalty_saas: bool = False
    saas_port: int | None = None  # where start() serves the loyalty SaaS, once settled
    started: list[Any] = field(default_factory=list)

    def settle(self, settings: config.Settings) -> config.Settings:
        """``settings`` with the extras in them: the SMTP sink's host and a free port
        (unless one other than the default was asked for), the loyalty SaaS's URL."""
        changes: dict[str, Any] = {}
        if self.smtp_sink:
            port = free_port() if settings.smtp_port == 8025 else settings.smtp_port
            changes.update(smtp_port=port, smtp_host="127.0.0.1", smtp_sink=True)
        if self.loyalty_saas and settings.loyalty_saas_url is None:
            self.saas_port = free_port()
            changes["loyalty_saas_url"] = f"http://127.0.0.1:{self.saas_port}"
        return replace(settings, **changes)

    async def start(self) -> None:
        if self.saas_port is not None:
            from pizza.thirdparty import loyalty_saas

            self.started.append(await loyalty_saas.serve("127.0.0.1", self.saas_port))

    async def stop(self) -> None:
        from pizza.thirdparty import loyalty_saas

        for server, task in self.started:
            with contextlib.suppress(Exception):
                await loyalty_saas.stop(server, task)
        self.started.clear()


def as_environment(current: config.Settings) -> dict[str, str]:
    """The settings a `pizza serve` child needs, as the PIZZA_* variables it reads. The
    gateway in front of the children limits the rate; they do not again."""
    told = {"PIZZA_SIMULATE": "1" if current.simulate else "0",
            "PIZZA_COOK_SECONDS": str(current.cook_seconds),
            "PIZZA_DRIVE_SECONDS": str(current.drive_seconds),
            "PIZZA_SMTP_HOST": current.smtp_host, "PIZZA_SMTP_PORT": str(current.smtp_port),
            "PIZZA_SMTP_SINK": "1" if current.smtp_sink else "0",
            "PIZZA_LOYALTY_BACKEND": current.loyalty_backend,
            "PIZZA_ORDER_CONFIRMED_V1": current.order_confirmed_v1,
            "PIZZA_RATE_LIMIT": "off"}
    if current.loyalty_saas_url:
        told["PIZZA_LOYALTY_SAAS_URL"] = current.loyalty_saas_url
    if current.redis_url:
        told["PIZZA_REDIS_URL"] = current.redis_url
    return told


def create_app(services: Sequence[Service], *, extras: Extras | None = None,
               runtime_options: dict[str, Any] | None = None) -> FastAPI:
    """One FastAPI app serving the routes of the given services, running them meanwhile."""
    tracing.configure_from_environment(
        "pizza" if len(services) != 1 else f"pizza-{services[0].name}")
    runtime = Runtime(services, **(runtime_options or {}))
    extras = extras or Extras()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await extras.start()
        await runtime.start()
        app.state.runtime = runtime
        log.info("services running: %s; bus at %s", ", ".join(runtime.hosts),
                 runtime.nats_url)
        try:
            yield
        finally:
            await runtime.stop()
            await extras.stop()

    app = shell.new_app(lifespan)
    tracing.install_http(app)  # a SERVER span per request: an order's trace starts there
    shell.guard(app)
    web_metrics.install(app, runtime.metrics)  # outermost: it counts refusals too
    for service in services:
        if service.router is not None:
            app.include_router(service.router)

    @app.get("/api/health", tags=["system"])
    async def health() -> dict[str, Any]:
        """Whether the services run, their queues and outbox backlogs, the bus, and the
        event loop's lag (``loopLagMs``: the largest recent delay of a 0.1 s timer).
        Answers within a second even while a database or the broker is away."""

        # Every number that needs the broker or a database is asked for at once, and
        # whatever has not answered within HEALTH_WAIT is reported as null (unknown):
        # a slow dependency never makes the health check itself slow.
        hosts = dict(runtime.hosts)
        asked: dict[tuple[str, str], asyncio.Task[Any]] = {}
        for name, host in hosts.items():
            asked[(name, "")] = asyncio.ensure_future(host.relay.backlog())
            for consumer in host.consumers:
                if consumer.queue is not None:
                    asked[(name, consumer.subscription.name)] = asyncio.ensure_future(
                        consumer.queue.pending())
        if asked:
            _done, late = await asyncio.wait(asked.values(), timeout=HEALTH_WAIT)
            for task in late:
                task.cancel()

        def answer(key: tuple[str, str]) -> Any:
            task = asked.get(key)
            if task is None or not task.done() or task.cancelled() or task.exception():
                return None
            return task.result()

        def queue_report(name: str, consumer: Any) -> dict[str, Any]:
            waiting, unacked = answer((name, consumer.subscription.name)) or (None, None)
            return {"waiting": waiting, "inFlight": unacked,
                    "handled": consumer.stats.handled,
                    "deadLettered": consumer.stats.dead_lettered}

        report = {name: {"outboxBacklog": answer((name, "")),
                         "database": "unavailable" if host.db.outage.down else "ok",
                         "queues": {c.subscription.name: queue_report(name, c)
                                    for c in host.consumers}}
                  for name, host in hosts.items()}
        reports = list(report.values())
        connected = runtime.connected
        healthy = connected and all(r["database"] == "ok" for r in reports)
        return {"status": "ok" if healthy else "degraded", "services": report,
                "nats": runtime.nats_url and without_credentials(runtime.nats_url),  # public
                "loopLagMs": round(runtime.loop_lag.recent_max * 1000, 1)}

    @app.get("/metrics", tags=["system"], response_class=PlainTextResponse)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics of this process: queues, outboxes, dead letters, the
        circuit breaker, the event loop's lag, HTTP requests (README, Metrics). Numbers
        that need the broker or a database and do not come within 0.25 s are left out."""
        return await web_metrics.scrape(request, runtime.metrics)

    @app.post("/api/admin/replay/{service}", status_code=202, tags=["system"],
              responses={404: {"description": "no such service runs in this process"}})
    async def replay(service: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
        """Rebuild a service's state from the start of its streams (e.g. the read model).

        Answers at once; the service's queues then work through the history, which
        ``GET /api/health`` shows draining.
        """
        host = runtime.hosts.get(service)
        if host is None:
            raise NotFound(f"no service {service!r} runs here",
                           {"running": sorted(runtime.hosts)})
        await host.replay()
        return {"service": service, "replaying": [c.name for c in host.consumers]}

    shell.add_public_routes(app, services)
    return app
