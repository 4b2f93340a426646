"""A stand-in for the third-party loyalty SaaS: the outside world the loyalty service calls.

Its API is theirs, not ours, on purpose: they speak of *members*, *credits* and
*references*, answer in their own error shape, limit how fast we may call them, and go
down now and then. The loyalty service's anti-corruption layer
(``pizza.services.loyalty.saas_adapter``) is what keeps all of that out of our model.

    POST /v1/members/{memberId}/credits   {"points", "reference"}, header Idempotency-Key
         -> 201 {"memberId", "balance"}; the same key again replays the first answer
    GET  /v1/members/{memberId}           -> 200 {"memberId", "balance"}, 404 if unknown
    POST /v1/admin/outage                 {"down": bool}: every member call answers 503
    POST /v1/admin/lose-responses         {"count": n}: the next n credits are applied but
                                          answered 504, as if the answer got lost
    POST /v1/admin/latency                {"seconds": s}: every member call takes s seconds
                                          more (a slow day), at most 60
    GET  /v1/admin/stats                  what happened, for tests and the curious

Beyond ``rate_limit_per_second`` member calls in any one second it answers 429 with a
``Retry-After`` (whole seconds, as HTTP says). ``failure_rate`` answers that fraction of
member calls 503 before doing anything. State is in memory: it is a simulation.

It imports nothing from ``pizza.services``: it stands for a company we do not own.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import socket
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


class SaasError(Exception):
    """An answer in the SaaS's own error shape: {"error": code, "message": ...}."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class CreditRequest(BaseModel):
    points: int = Field(ge=1)
    reference: str = Field(min_length=1, max_length=200)


class Outage(BaseModel):
    down: bool


class LostResponses(BaseModel):
    count: int = Field(ge=0)


class Latency(BaseModel):
    seconds: float = Field(ge=0, le=60)


@dataclass
class Credit:
    """One applied credit, kept by idempotency key so a retry gets the same answer."""

    member_id: str
    points: int
    reference: str
    balance: int


@dataclass
class SaasState:
    """Everything the simulated company remembers (in memory)."""

    rate_limit_per_second: float | None = None
    failure_rate: float = 0.0
    random: random.Random = field(default_factory=random.Random)
    down: bool = False
    lose_responses: int = 0
    latency: float = 0.0  # seconds every member call takes before it is answered
    balances: dict[str, int] = field(default_factory=dict)
    credits: dict[str, Credit] = field(default_factory=dict)
    recent: deque[float] = field(default_factory=deque)  # accepted call times, last 1 s
    stats: dict[str, int] = field(default_factory=lambda: {
        "requests": 0, "rateLimited": 0, "unavailable": 0, "creditsApplied": 0,
        "creditsReplayed": 0, "responsesLost": 0,
    })

    def admit(self, now: float) -> None:
        """The gateway: outage, rate limit, random failure, in that order."""
        self.stats["requests"] += 1
        if self.down:
            self.stats["unavailable"] += 1
            raise SaasError(503, "service_unavailable", "we are down for maintenance")
        self._within_rate_limit(now)
        if self.failure_rate and self.random.random() < self.failure_rate:
            self.stats["unavailable"] += 1
            raise SaasError(503, "service_unavailable", "please try again later")

    def _within_rate_limit(self, now: float) -> None:
        while self.recent and self.recent[0] <= now - 1.0:
            self.recent.popleft()
        limit = self.rate_limit_per_second
        if limit is not None and len(self.recent) >= limit:
            self.stats["rateLimited"] += 1
            wait = max(1, math.ceil(self.recent[0] + 1.0 - now))
            raise SaasError(429, "rate_limited", f"more than {limit:g} requests per second",
                            {"Retry-After": str(wait)})
        self.recent.append(now)

    def credit(self, member_id: str, body: CreditRequest, key: str | None) -> Credit:
        if key is not None and key in self.credits:
            known = self.credits[key]
            if (known.member_id, known.points, known.reference) != (
                    member_id, body.points, body.reference):
                raise SaasError(409, "idempotency_key_reused",
                                "this Idempotency-Key was used for a different credit")
            self.stats["creditsReplayed"] += 1
            return known
        balance = self.balances.get(member_id, 0) + body.points
        self.balances[member_id] = balance
        applied = Credit(member_id, body.points, body.reference, balance)
        if key is not None:
            self.credits[key] = applied
        self.stats["creditsApplied"] += 1
        if self.lose_responses > 0:  # applied, but the caller will never hear of it
            self.lose_responses -= 1
            self.stats["responsesLost"] += 1
            raise SaasError(504, "gateway_timeout", "upstream timed out")
        return applied


def create_app(*, rate_limit_per_second: float | None = None, failure_rate: float = 0.0,
               seed: int | None = None) -> FastAPI:
    """The SaaS as an ASGI app; ``app.state.saas`` is its memory (tests may look)."""
    app = FastAPI(title="LoyaltyCloud (simulated)", version="1")
    state = SaasState(rate_limit_per_second, failure_rate, random.Random(seed))
    app.state.saas = state

    @app.exception_handler(SaasError)
    async def saas_error(_request: Request, error: SaasError) -> JSONResponse:
        return JSONResponse({"error": error.code, "message": error.message},
                            status_code=error.status, headers=error.headers)

    async def gateway() -> None:
        state.admit(time.monotonic())
        if state.latency:
            await asyncio.sleep(state.latency)

    @app.post("/v1/members/{member_id}/credits", status_code=201,
              dependencies=[Depends(gateway)])
    async def add_credit(member_id: str, body: CreditRequest,
                         idempotency_key: str | None = Header(default=None)) -> dict[str, Any]:
        applied = state.credit(member_id, body, idempotency_key)
        return {"memberId": member_id, "balance": applied.balance}

    @app.get("/v1/members/{member_id}", dependencies=[Depends(gateway)])
    async def member(member_id: str) -> dict[str, Any]:
        if member_id not in state.balances:
            raise SaasError(404, "member_not_found", f"no member {member_id}")
        return {"memberId": member_id, "balance": state.balances[member_id]}

    @app.post("/v1/admin/outage")
    async def outage(body: Outage) -> dict[str, Any]:
        state.down = body.down
        return {"down": state.down}

    @app.post("/v1/admin/lose-responses")
    async def lose_responses(body: LostResponses) -> dict[str, Any]:
        state.lose_responses = body.count
        return {"count": state.lose_responses}

    @app.post("/v1/admin/latency")
    async def latency(body: Latency) -> dict[str, Any]:
        state.latency = body.seconds
        return {"seconds": state.latency}

    @app.get("/v1/admin/stats")
    async def stats() -> dict[str, Any]:
        return dict(state.stats)

    return app


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: Ctrl-C belongs to whoever started us."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    """Bind here, not in uvicorn: its bind failure is a sys.exit inside a task."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it; without it each answer waits ~40 ms for a delayed
    # ACK (Nagle), which asyncio only avoids for the sockets it binds itself.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def serve(host: str = "127.0.0.1", port: int = 0, app: FastAPI | None = None,
                ) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Serve the SaaS on host:port (0 = a free port) until ``server.should_exit = True``.

    Returns once it accepts connections; ``url(server)`` tells where. Raises OSError if
    the port is taken.
    """
    sock = _bind(host, port)
    config = uvicorn.Config(app or create_app(), host=host, port=sock.getsockname()[1],
                            lifespan="off", log_level="warning", access_log=False)
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="loyalty-saas")
    while not server.started:
        if task.done():
            sock.close()
            task.result()  # raises what stopped it
            raise RuntimeError("the loyalty SaaS stopped before it started")
        await asyncio.sleep(0.01)
    return server, task


def url(server: uvicorn.Server) -> str:
    """The base URL a started ``serve()`` listens on."""
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def stop(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    """Stop a ``serve()``d SaaS and wait until its port is closed."""
    server.should_exit = True
    await task
