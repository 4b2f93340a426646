"""Who may do what over HTTP: CONTRACT section 5's access matrix, in one place.

One ASGI middleware, the :class:`Gate`, stands in front of every route. For each request
it finds the caller from the bearer token (:mod:`pizza.web.identity`), limits the rate of
requests that carry no valid token (per client address, with the ``limits`` library),
refuses a state-changing request whose body is not JSON (so no web page can post a form
to us through a visitor's browser), and checks the caller's role against :data:`RULES`.
Everything a rule does not name is the operator's. Routes then ask
:func:`current_caller` for the caller, to check that a customer acts on their own orders,
addresses and points only (another customer's is a 404: its existence is not disclosed).

The checks run before routing and body parsing, so an anonymous request learns nothing,
not even whether its body was valid or its path exists.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qs

import orjson
from fastapi import Depends, FastAPI, Request
from limits import parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.routing import Match

from pizza.web.errors import ApiError
from pizza.web.identity import ROLES, Caller, Unauthenticated, Verifier

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ANYONE = frozenset({"anyone"})
CUSTOMER = frozenset({"customer", "operator"})
OPERATOR = frozenset({"operator"})
EVERY_ROLE = frozenset(ROLES)  # anyone signed in


@dataclass(frozen=True)
class Rule:
    methods: frozenset[str]
    path: re.Pattern[str]
    who: frozenset[str]  # roles, or ANYONE

    def matches(self, method: str, path: str) -> bool:
        return method in self.methods and self.path.fullmatch(path) is not None


def _rule(methods: str, path: str, who: frozenset[str]) -> Rule:
    return Rule(frozenset(methods.split()), re.compile(path), who)


READ = "GET HEAD"
_ID = r"[^/]+"

# CONTRACT section 5, first match wins; anything no rule matches is the operator's.
RULES: tuple[Rule, ...] = (
    _rule(READ, r"/api/health|/api/menu|/api/catalog(/storming)?|/asyncapi\.json", ANYONE),
    _rule(READ, r"/api/session", EVERY_ROLE),  # ours: who a token belongs to
    _rule("POST", r"/api/accounts|/api/session", ANYONE),  # ours: customers sign up, in
    _rule(READ, r"/docs(/.*)?|/redoc|/openapi\.json|/\.well-known/jwks\.json", ANYONE),
    _rule("POST", r"/api/delivery-addresses|/api/orders", CUSTOMER),
    # A customer's own orders (the route checks whose), and their points.
    _rule(READ, r"/api/orders", CUSTOMER),
    _rule(READ, rf"/api/orders/{_ID}(/stream|/emails)?", CUSTOMER),
    _rule("POST", rf"/api/orders/{_ID}/cancel", CUSTOMER),
    _rule(READ, rf"/api/loyalty/{_ID}", CUSTOMER),
    _rule("GET HEAD POST", r"/api/kitchen/.*", frozenset({"kitchen", "operator"})),
    _rule("GET HEAD POST", r"/api/delivery/.*", frozenset({"driver", "operator"})),
    _rule("GET HEAD POST", r"/api/pickup/.*", frozenset({"counter", "operator"})),
    # The web pages (and their assets): whatever is not the API or the metrics.
    _rule(READ, r"/(?!api/|api$|metrics$).*", ANYONE),
)


def who_may(method: str, path: str) -> frozenset[str]:
    for rule in RULES:
        if rule.matches(method, path):
            return rule.who
    return OPERATOR


STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Sent with every answer: no sniffing of types, no framing by other sites, no referrer
# leaking order ids, and pages may load only what we serve.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self' 'unsafe-inline'; "
     b"style-src 'self' 'unsafe-inline'; "
     b"img-src 'self' data:; frame-ancestors 'none'; "
     b"base-uri 'none'; form-action 'self'"),
)


class Gate:
    """The ASGI middleware that applies the access rules (see the module's docstring)."""

    def __init__(self, app: ASGIApp, verifier: Verifier, rate_limit: str,
                 routes: Callable[[], list[Any]] = list) -> None:
        self.app = app
        self.routes = routes
        self.verifier = verifier
        self.limits = parse_many(rate_limit) if limiting(rate_limit) else []
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_security_headers(send)
        method, path = scope["method"], scope["path"]
        headers = _headers(scope)
        caller: Caller | None = None
        problem: str | None = None
        token = _bearer(headers.get(b"authorization"))
        if token is None and method == "GET" and path.endswith("/stream"):
            token = _query_token(scope)
        if token is not None:
            try:
                caller = await self.verifier.verify(token)
            except Unauthenticated as why:
                problem = str(why)
        if caller is None:
            wait = await self._over_limit(scope)
            if wait is not None:
                await _refuse(send, 429, "rate-limited",
                              "too many requests without a valid token; slow down",
                              [(b"retry-after", str(wait).encode())])
                return
        who = who_may(method, path)
        if who is not ANYONE and not self._method_not_served(scope):
            if caller is None:
                await _refuse(send, 401, "unauthenticated",
                              problem or "sign in: send Authorization: Bearer <token>",
                              [(b"www-authenticate", _challenge(problem))])
                return
            if not caller.roles & who:
                await _refuse(send, 403, "forbidden",
                              f"{'/'.join(sorted(caller.roles))} may not {method} {path[:200]}")
                return
        if method in STATE_CHANGING and not _json_or_empty(headers):
            await _refuse(send, 415, "unsupported-media-type",
                          "send the body as application/json")
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)

    def _method_not_served(self, scope: Scope) -> bool:
        """Whether a route serves this path but not this method: that is answered 405 with
        Allow to anyone (the paths are public in /openapi.json), not 401."""
        partial = False
        for route in self.routes():
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return False
            partial = partial or match == Match.PARTIAL
        return partial

    async def _over_limit(self, scope: Scope) -> int | None:
        """Seconds to wait if this client is over its limit for anonymous requests."""
        client = scope.get("client")
        key = client[0] if client else "unknown"
        for limit in self.limits:
            if not await self.limiter.hit(limit, "anonymous", key):
                stats = await self.limiter.get_window_stats(limit, "anonymous", key)
                return max(1, int(stats.reset_time - time.time()) + 1)
        return None


def limiting(rate_limit: str) -> bool:
    """Whether a rate limit is set (``off`` or nothing: none)."""
    return rate_limit.strip().lower() not in ("", "off")


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", ())}


def _bearer(value: bytes | None) -> str | None:
    if value is None:
        return None
    scheme, _, token = value.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _query_token(scope: Scope) -> str | None:
    """``?access_token=`` (RFC 6750, section 2.3), taken on event streams only: a browser's
    EventSource cannot send an Authorization header."""
    query = scope.get("query_string", b"")
    if b"access_token=" not in query:
        return None
    values = parse_qs(query.decode("latin-1"), max_num_fields=20).get("access_token")
    return values[0].strip() or None if values else None


def _challenge(problem: str | None) -> bytes:
    if problem is None:
        return b'Bearer realm="pizza"'
    return b'Bearer realm="pizza", error="invalid_token"'


def _json_or_empty(headers: dict[bytes, bytes]) -> bool:
    """A JSON body, or none at all (the buttons: POST .../start carries no body)."""
    kind = headers.get(b"content-type")
    if kind is None:
        length = headers.get(b"content-length", b"0").strip()
        return length in (b"", b"0") and b"transfer-encoding" not in headers
    media = kind.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/")
                                            and media.endswith(b"+json"))


def _with_security_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", ())}
            message["headers"] = [*message.get("headers", ()),
                                  *(h for h in SECURITY_HEADERS if h[0] not in present)]
        await send(message)

    return sending


async def _refuse(send: Send, status: int, code: str, message: str,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = orjson.dumps({"error": {"code": code, "message": message, "details": None}})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


# -- for routes ---------------------------------------------------------------------------


def caller_of(request: Request) -> Caller | None:
    return getattr(request.state, "caller", None)


async def _current_caller(request: Request) -> Caller:
    caller = caller_of(request)
    if caller is None:  # the Gate lets no such request through to a guarded route
        raise ApiError(401, "unauthenticated", "sign in: send Authorization: Bearer <token>")
    return caller


CurrentCaller = Annotated[Caller, Depends(_current_caller)]


def own_or_not_found(caller: Caller, customer_id: str | None, what: str) -> None:
    """A customer asking about another customer's thing is told it does not exist."""
    if not caller.may_act_for(customer_id):
        raise ApiError(404, "not-found", f"no {what}")


def acting_for(caller: Caller, customer_id: str) -> None:
    """A customer may place orders and register addresses for themselves only."""
    if not caller.may_act_for(customer_id):
        raise ApiError(403, "forbidden", "a customer acts for their own customer id only",
                       {"customerId": "must be the signed-in customer's"})


# -- wiring -------------------------------------------------------------------------------


def install(app: FastAPI, verifier: Verifier, *, rate_limit: str = "",
            cors_origins: tuple[str, ...] = ()) -> None:
    """Put the Gate (and CORS, when origins are configured) in front of ``app``, and say
    in its OpenAPI document what each route may answer because of them."""
    app.add_middleware(Gate, verifier=verifier, rate_limit=rate_limit,
                       routes=lambda: app.router.routes)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins),
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
                           max_age=600)
    _document(app, limiting(rate_limit))


def _document(app: FastAPI, limited: bool) -> None:
    make = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = make()
        schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["bearer"] = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        for path, operations in document.get("paths", {}).items():
            for method, operation in operations.items():
                if not isinstance(operation, dict):
                    continue
                concrete = re.sub(r"\{[^}]+\}", "x", path)
                who = who_may(method.upper(), concrete)
                responses = operation.setdefault("responses", {})
                if who is ANYONE:
                    if limited:
                        responses.setdefault("429", {"description": "too many requests"})
                    continue
                operation["security"] = [{"bearer": []}]
                responses.setdefault("401", {"description": "no valid bearer token"})
                responses.setdefault("403", {"description":
                                             f"only {', '.join(sorted(who))} may"})
                if limited:
                    responses.setdefault("429", {"description": "too many requests "
                                                 "without a valid token"})
                if method.upper() in STATE_CHANGING:
                    responses.setdefault("415", {"description": "the body is not JSON"})
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
