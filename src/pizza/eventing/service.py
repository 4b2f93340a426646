"""Declaring a service: its tables, what it handles, what it publishes, its HTTP routes.

    async def open_ticket(event: OrderConfirmedV1, ctx: Context) -> None:
        ...

    def create(settings: Settings) -> Service:  # the service's factory
        kitchen = Service("kitchen", tables=metadata)
        kitchen.handles(OrderConfirmedV1, max_in_flight=20)(open_ticket)
        return kitchen

A service is made by a factory from its settings, not at import: two calls make two
services that share nothing (two systems in one interpreter, or one per test). What a
handler needs besides the message and its context is given to it there (``inject``).

What a handler or an HTTP route may put on the bus is declared with it (``causes=`` and
``openapi_extra=route_causes(...)``): the catalog's event-storming board is drawn from
these declarations, so which command leads to which events is stated by the code, once.

A declaration only: nothing connects until a ServiceHost runs it (host.py), so the same
service runs inside ``pizza up`` with the others or alone in ``pizza serve``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from sqlalchemy import MetaData

from pizza.eventing.catalog import Command, Event, Message, Reply
from pizza.eventing.context import Context, reply_subject
from pizza.eventing.context import Reject as Reject  # where handlers have found it
from pizza.eventing.envelope import Metadata

if TYPE_CHECKING:
    from pizza.eventing.host import ServiceHost

Handler = Callable[[Any, Context], Awaitable[None]]
# A handler's step that must not run inside its transaction: a call to someone else over
# the network (their rate limits and bad days would hold the database's write lock). It
# gets the message and its metadata and runs before the transaction opens; what it
# returns is the handler's ``ctx.prepared``. See ``Service.handles(before=...)``.
Before = Callable[[Any, "Metadata"], Awaitable[Any]]
# Answers a message whose personal data can no longer be opened (its key was erased);
# ctx.cause is the message's metadata.
ForgottenHook = Callable[[Context], Awaitable[None]]
H = TypeVar("H", bound=Handler)
Hook = Callable[["ServiceHost"], Awaitable[None]]
W = TypeVar("W", bound=Callable[[], Awaitable[bool | float]])
Key = tuple[str, int]
# The OpenAPI extension of a route that puts messages on the bus (route_causes).
ROUTE_CAUSES = "x-pizza-causes"


def inject(handler: Callable[..., Awaitable[None]], **dependencies: Any) -> Handler:
    """``handler(message, ctx, **dependencies)`` as a handler of ``(message, ctx)``, keeping
    its name and docstring (the queue's name and the catalog's board read them). How a
    service's factory gives a handler what it was built with (settings, its stores):

        service.handles(SendEmailV1)(inject(handlers.send_email, sender=sender))
    """

    @functools.wraps(handler)
    async def injected(message: Any, ctx: Context) -> None:
        await handler(message, ctx, **dependencies)

    return injected


def route_causes(*messages: type[Message], **extra: Any) -> dict[str, Any]:
    """The ``openapi_extra`` of an HTTP route that may put these messages on the bus:

        @router.post("/api/orders", openapi_extra=route_causes(OrderConfirmedV2))

    It shows in the OpenAPI document (``x-pizza-causes``), and the catalog's board reads
    it. ``extra`` is any other openapi_extra of the route.
    """
    return {**extra, ROUTE_CAUSES: [{"type": m.info.type, "version": m.info.version,
                                     "kind": m.info.kind} for m in messages]}


# The OpenAPI extension of a GET route that answers fixed data (the menu), not what the
# service's handlers have recorded: the board shows it under no read model.
READ_MODEL = "x-pizza-read-model"


def fixed_data(**extra: Any) -> dict[str, Any]:
    """The ``openapi_extra`` of a GET route whose answer no message changes."""
    return {**extra, READ_MODEL: False}


def caused_by_route(openapi_extra: dict[str, Any] | None) -> list[Key]:
    """The (type, version) of what a route declares it may put on the bus."""
    return [(str(c["type"]), int(c["version"]))
            for c in (openapi_extra or {}).get(ROUTE_CAUSES, [])]


def queue_name(service: str, queue: str) -> str:
    """The durable consumer of a service's queue on the broker (the broker's permissions
    allow a service exactly its own)."""
    return f"{service}-{queue}"


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff between attempts: initial * factor**(attempt-1), at most maximum."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 60.0

    def delay(self, attempt: int) -> float:
        return min(self.maximum, self.initial * self.factor ** max(0, attempt - 1))


@dataclass(frozen=True)
class Background:
    """Work a service does by itself while it runs (e.g. simulated staff).

    ``work`` returns True when it did something; when it did nothing the loop rests
    ``idle_seconds``; or it returns the seconds to rest (0: again at once), e.g. until
    its next known due time. ``Service.wake(name)`` ends a rest at once (work arrived,
    e.g. after the commit that made it). It runs only if ``when()`` is true at start; an
    exception is logged and the loop goes on after ``error_pause`` seconds.
    """

    name: str
    work: Callable[[], Awaitable[bool | float]]
    when: Callable[[], bool] = lambda: True
    idle_seconds: float = 0.05
    error_pause: float = 1.0


@dataclass
class Subscription:
    """One durable queue of a service and the handlers that drain it."""

    name: str
    subject: str
    handlers: dict[tuple[str, int], Handler] = field(default_factory=dict)
    max_in_flight: int = 64
    max_attempts: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    start: Literal["new", "all"] = "new"
    forgotten: ForgottenHook | None = None  # none: such a message is acknowledged, skipped
    # What handling each message may put on the bus (events, commands, answers).
    causes: dict[Key, tuple[type[Message], ...]] = field(default_factory=dict)
    # Steps run before each message's transaction, with none open (Service.handles).
    before: dict[Key, Before] = field(default_factory=dict)

    @property
    def messages(self) -> list[tuple[str, int]]:
        return sorted(self.handlers)


class Service:
    def __init__(self, name: str, *, tables: MetaData | None = None,
                 description: str = "") -> None:
        self.name = name
        self.tables = tables
        self.description = description
        self.subscriptions: dict[str, Subscription] = {}
        # Queues the service drains with its own code, not handlers (e.g. a journal of
        # every message): queue name -> subject, wildcards allowed. Declared so that the
        # broker lets it use exactly these (transport/permissions.py).
        self.taps: dict[str, str] = {}
        self.publishes: list[type[Message]] = []
        self.sends: list[type[Command]] = []
        self.on_start: list[Hook] = []
        self.on_stop: list[Hook] = []
        self.on_replay: list[Hook] = []  # clear what a replay of history rebuilds
        self.background: list[Background] = []
        self.router: Any = None  # a FastAPI APIRouter, if the service has an HTTP side
        # Circuit breakers to report in /metrics: name -> its state now ("closed",
        # "half-open", "open"), or None while it is not in use.
        self.breakers: dict[str, Callable[[], str | None]] = {}
        self.host: ServiceHost | None = None

    # -- declarations ---------------------------------------------------------------------

    def handles(self, message: type[Event] | type[Command], *, max_in_flight: int = 64,
                max_attempts: int = 5, backoff: Backoff | None = None,
                start: Literal["new", "all"] = "new", name: str | None = None,
                forgotten: ForgottenHook | None = None,
                causes: Sequence[type[Message]] = (),
                before: Before | None = None) -> Callable[[H], H]:
        """Handle an event or a command through a durable queue of this service's own.

        ``forgotten`` answers a message whose personal data was erased (see personal.py).
        ``causes``: what the handler may publish, send or answer (declared by the service).
        ``before(message, metadata)``: a call to someone else that must not hold the
        handler's transaction open. It runs first, with no transaction open, for each
        message not handled before; its result is the handler's ``ctx.prepared``. It may
        run again for the same message (the process dies before the commit, the
        transaction fails, a redelivery), so it must be safe to repeat, e.g. with an
        idempotency key. What it raises is the handler's failure: retried with backoff,
        or dead-lettered for ``Reject``.
        """
        info = message.info
        caused = self._own(causes)

        def register(handler: H) -> H:
            queue = name or handler.__name__.replace("_", "-")
            if queue in self.subscriptions:
                raise ValueError(f"{self.name} already has a queue named {queue!r}")
            self.subscriptions[queue] = Subscription(
                name=queue,
                subject=info.subject,
                handlers={info.key: handler},
                max_in_flight=max_in_flight,
                max_attempts=max_attempts,
                backoff=backoff or Backoff(),
                start=start,
                forgotten=forgotten,
                causes={info.key: caused},
                before={info.key: before} if before is not None else {},
            )
            return handler

        return register

    def on_reply(self, answer: type[Reply], *, max_attempts: int = 5,
                 causes: Sequence[type[Message]] = ()) -> Callable[[H], H]:
        """Handle an answer to a command this service sent (all answers share one queue)."""
        caused = self._own(causes)

        def register(handler: H) -> H:
            queue = self.subscriptions.setdefault(
                "replies",
                Subscription(name="replies", subject=reply_subject(self.name),
                             max_attempts=max_attempts),
            )
            queue.handlers[answer.info.key] = handler
            queue.causes[answer.info.key] = caused
            return handler

        return register

    def runs(self, name: str, *, when: Callable[[], bool] = lambda: True,
             idle_seconds: float = 0.05) -> Callable[[W], W]:
        """Run the decorated ``async def work() -> bool`` in a loop while the service runs."""

        def register(work: W) -> W:
            self.background.append(Background(name, work, when, idle_seconds))
            return work

        return register

    def wake(self, job: str) -> None:
        """Work arrived for the background ``job`` (call it after the commit that made
        the work, ``ctx.on_commit``): it runs now instead of at the end of its rest.
        Nothing if the service or the job is not running here."""
        if self.host is not None:
            self.host.wake(job)

    def declare_publishes(self, *messages: type[Message]) -> None:
        """Name what this service produces (the catalog and the live registry show it)."""
        for message in messages:
            if issubclass(message, Command):
                self.sends.append(message)
            else:
                self.publishes.append(message)

    def _own(self, messages: Iterable[type[Message]]) -> tuple[type[Message], ...]:
        """``messages``, if this service declares it produces each (declare_publishes)."""
        mine = {m.info.key for m in (*self.publishes, *self.sends)}
        strange = [f"{m.info.type} v{m.info.version}" for m in messages
                   if m.info.key not in mine]
        if strange:
            raise ValueError(f"{self.name} does not declare that it publishes "
                             f"{', '.join(strange)} (declare_publishes)")
        return tuple(messages)

    @property
    def consumes(self) -> list[tuple[str, int]]:
        return sorted({key for sub in self.subscriptions.values() for key in sub.handlers})

    # -- at run time ----------------------------------------------------------------------

    def running(self) -> ServiceHost:
        if self.host is None:
            raise RuntimeError(f"the {self.name} service is not running")
        return self.host

    @contextlib.asynccontextmanager
    async def unit_of_work(self, correlation_id: str | None = None) -> AsyncIterator[Context]:
        """One transaction for an HTTP command: its writes and messages commit together."""
        async with self.running().unit_of_work(correlation_id) as ctx:
            yield ctx

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[Any]:
        """A connection for queries."""
        async with self.running().db.read() as conn:
            yield conn
