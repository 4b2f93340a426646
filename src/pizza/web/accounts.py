"""Customer accounts of our own issuer: create one with an email and a password, sign in.

Only when the system is its own issuer (``PIZZA_OIDC_ISSUER`` unset); with an outside
identity provider, people sign in there. Staff have no accounts: they sign in with a link
from ``pizza token --role kitchen --link``.

* ``POST /api/accounts {email, password}``: ``201 {customerId, token}``. The customer id is
  ours (``c-`` and 32 random hex digits), never the email and never handed out twice. An
  email already registered is ``409``: that tells whoever asks that the email has an
  account (accepted for the demo; the README says so).
* ``POST /api/session {email, password}``: ``200 {customerId, token}``, or ``401`` with one
  message whether the email is unknown or the password wrong; both cases do the same
  work (a database read and one scrypt), so their timing does not tell them apart either.

The token is a customer's token of our issuer, valid as long as ``pizza token``'s by
default. Passwords are kept as scrypt hashes (``hashlib.scrypt``, a random salt per
account, its parameters beside it) and compared in constant time; hashing runs in a
worker thread, off the event loop.

Storage is one SQLite file, ``$PIZZA_HOME/identity/accounts.db`` (mode 0600, beside the
signing key), opened on first use. Its table is made with ``CREATE TABLE IF NOT EXISTS``
and waits on SQLite's lock, and an account is one ``INSERT`` against a unique email, so two
processes starting, or two sign-ups of one email, at once make one table and one account.

Both routes are for anyone, and the Gate already limits anonymous requests per client
address; a caller with a token skips that limit, so these routes count every request per
client address against the same ``PIZZA_RATE_LIMIT`` themselves, and failed sign-ins per
email (whether or not it has an account) against :data:`FAILED_SIGN_INS`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
import unicodedata
import uuid
from collections.abc import MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from limits import parse, parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic.alias_generators import to_camel
from sqlalchemy import Column, MetaData, String, Table, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateTable

from pizza import config
from pizza.web import access
from pizza.web.errors import error_response
from pizza.web.identity import DEFAULT_TTL, LocalIssuer

log = logging.getLogger("pizza.web.accounts")

MAX_EMAIL = 254  # RFC 5321's longest path, less its angle brackets
MIN_PASSWORD = 8
MAX_PASSWORD = 128
# Something@domain.tld: no spaces, no control characters; the mail server has the last
# word. Written so that JSON Schema (ECMAScript) and the check here read it alike.
_PART = r"[^@\s\x00-\x1f\x7f]"
EMAIL_PATTERN = rf"^{_PART}+@{_PART}+\.[^@\s\x00-\x1f\x7f.]+$"

# scrypt: 16 MiB and some 50 ms a hash on one core (OWASP's minimum is N=2^17 with r=8
# for a server; this demo runs on laptops and shared CI, and keeps N per account, so it
# can be raised for new passwords without breaking the old).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
FAILED_SIGN_INS = "10/15minutes"  # per email: then 429 until the window moves on

DATABASE = "accounts.db"
WRONG = "the email or password is not right"

metadata = MetaData()
accounts = Table(
    "accounts", metadata,
    Column("customer_id", String(40), primary_key=True),
    # The email as compared (lower case): one account per address, whatever its case.
    Column("email_key", String(MAX_EMAIL), nullable=False, unique=True),
    Column("email", String(MAX_EMAIL), nullable=False),  # as the customer typed it
    Column("password", String(200), nullable=False),  # scrypt$N$r$p$salt$hash (hex)
    Column("created_at", String(40), nullable=False),
)


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True,
                              extra="ignore")


class Credentials(_Camel):
    """An email and a password (the body of ``POST /api/accounts`` and ``/api/session``)."""

    email: Annotated[str, StringConstraints(max_length=MAX_EMAIL, pattern=EMAIL_PATTERN)]
    password: Annotated[str, StringConstraints(min_length=MIN_PASSWORD,
                                               max_length=MAX_PASSWORD)]


class SignedIn(_Camel):
    """Who the customer is, and a bearer token that acts for them."""

    customer_id: str
    token: str


class EmailTaken(Exception):
    """An account with this email exists already."""


# -- passwords ------------------------------------------------------------------------------


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # NFC: the same password typed on two keyboards (é composed or not) is one password.
    secret = unicodedata.normalize("NFC", password).encode()
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=HASH_BYTES,
                          maxmem=256 * n * r)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _derive(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = bytes.fromhex(digest)
        actual = _derive(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _nobody() -> str:
    """Compared against when the email has no account, so that an unknown email costs
    what a wrong password does (made at first use: importing this costs no hash)."""
    return hash_password(secrets.token_urlsafe(16))


def email_key(email: str) -> str:
    return email.lower()


# -- storage ----------------------------------------------------------------------------------


class Accounts:
    """The accounts in ``directory/accounts.db`` (opened on first use)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / DATABASE
        self._engine: AsyncEngine | None = None
        self._opening = asyncio.Lock()

    async def _ready(self) -> AsyncEngine:
        if self._engine is None:
            async with self._opening:
                if self._engine is None:
                    self._engine = await self._open()
        return self._engine

    async def _open(self) -> AsyncEngine:
        await asyncio.to_thread(self._make_file)
        # No pool: a connection (and aiosqlite's thread) lives for one request only, so
        # nothing is left open when the app stops. timeout: wait on another's lock.
        engine = create_async_engine(f"sqlite+aiosqlite:///{self.path}", poolclass=NullPool,
                                     connect_args={"timeout": 15}, hide_parameters=True)
        async with engine.begin() as conn:
            await conn.execute(CreateTable(accounts, if_not_exists=True))
        return engine

    def _make_file(self) -> None:
        """The file, readable by its owner only (SQLite gives its journal the same mode)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)

    async def create(self, email: str, password: str) -> str:
        """A new account's customer id; :class:`EmailTaken` if the email has one."""
        engine = await self._ready()
        hashed = await asyncio.to_thread(hash_password, password)
        customer_id = f"c-{uuid.uuid4().hex}"
        try:
            async with engine.begin() as conn:
                await conn.execute(accounts.insert().values(
                    customer_id=customer_id, email_key=email_key(email), email=email,
                    password=hashed, created_at=datetime.now(UTC).isoformat()))
        except IntegrityError:
            raise EmailTaken() from None
        return customer_id

    async def check(self, email: str, password: str) -> str | None:
        """The customer id whose email and password these are, else None."""
        engine = await self._ready()
        async with engine.connect() as conn:
            row = (await conn.execute(
                select(accounts.c.customer_id, accounts.c.password)
                .where(accounts.c.email_key == email_key(email)))).first()
        stored = row.password if row is not None else _nobody()
        matches = await asyncio.to_thread(password_matches, password, stored)
        return row.customer_id if row is not None and matches else None

    async def forget(self, customer_id: str) -> bool:
        """Delete the customer's account (email and password hash); True if there was one."""
        engine = await self._ready()
        async with engine.begin() as conn:
            deleted = await conn.execute(
                accounts.delete().where(accounts.c.customer_id == customer_id))
        return bool(deleted.rowcount)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None


# -- limits -----------------------------------------------------------------------------------


class Throttle:
    """Requests per client address (``PIZZA_RATE_LIMIT``, token or not), and failed
    sign-ins per email (:data:`FAILED_SIGN_INS`), in this process's memory."""

    def __init__(self, rate_limit: str) -> None:
        self.per_client = parse_many(rate_limit) if access.limiting(rate_limit) else []
        self.per_email = parse(FAILED_SIGN_INS)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def client_over(self, request: Request) -> int | None:
        key = request.client.host if request.client else "unknown"
        for limit in self.per_client:
            if not await self.limiter.hit(limit, "accounts", key):
                return await self._wait(limit, "accounts", key)
        return None

    async def email_over(self, email: str) -> int | None:
        key = _digest(email)
        if not await self.limiter.test(self.per_email, "sign-in", key):
            return await self._wait(self.per_email, "sign-in", key)
        return None

    async def failed(self, email: str) -> None:
        await self.limiter.hit(self.per_email, "sign-in", _digest(email))

    async def _wait(self, limit: Any, *keys: str) -> int:
        stats = await self.limiter.get_window_stats(limit, *keys)
        return max(1, int(stats.reset_time - time.time()) + 1)


def _digest(email: str) -> str:
    return hashlib.sha256(email_key(email).encode()).hexdigest()


def _too_many(wait: int) -> JSONResponse:
    response = error_response(429, "rate-limited", "too many tries; wait a moment")
    response.headers["Retry-After"] = str(wait)
    return response


# -- routes -----------------------------------------------------------------------------------

RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {"description": "too many tries from this address (or for this email)"},
}


def add_routes(app: FastAPI, issuer: LocalIssuer, *, ttl: float = DEFAULT_TTL) -> Accounts:
    """``POST /api/accounts`` and ``POST /api/session`` on ``app``, signing with ``issuer``
    (accounts are kept beside its key)."""
    store = Accounts(issuer.directory)
    throttle = Throttle(config.settings().rate_limit)

    def signed_in(customer_id: str) -> SignedIn:
        return SignedIn(customer_id=customer_id,
                        token=issuer.issue("customer", customer_id, ttl))

    @app.post("/api/accounts", status_code=201, response_model=SignedIn, tags=["accounts"],
              responses={**RESPONSES, 409: {"description": "this email has an account "
                                                           "already: sign in instead"}})
    async def create_account(body: Credentials, request: Request) -> Any:
        """Create a customer account; answers a token that acts for the new customer."""
        wait = await throttle.client_over(request)
        if wait is not None:
            return _too_many(wait)
        try:
            customer_id = await store.create(body.email, body.password)
        except EmailTaken:
            return error_response(409, "email-taken",
                                  "an account with this email exists; sign in instead")
        return signed_in(customer_id)

    @app.post("/api/session", response_model=SignedIn, tags=["accounts"],
              responses={**RESPONSES, 401: {"description": WRONG}})
    async def sign_in(body: Credentials, request: Request) -> Any:
        """Sign in with an account's email and password; answers a customer's token."""
        wait = await throttle.client_over(request) or await throttle.email_over(body.email)
        if wait is not None:
            return _too_many(wait)
        customer_id = await store.check(body.email, body.password)
        if customer_id is None:
            await throttle.failed(body.email)
            response = error_response(401, "wrong-credentials", WRONG)
            response.headers["WWW-Authenticate"] = 'Bearer realm="pizza"'
            return response
        return signed_in(customer_id)

    app.add_middleware(ForgetAccount, store=store)
    return store


# -- forgetting ------------------------------------------------------------------------------

_FORGET = re.compile(r"/api/admin/customers/([^/]+)/forget")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


class ForgetAccount:
    """When the system accepts to forget a customer (``POST
    /api/admin/customers/{id}/forget`` answered ``202``, so an operator asked and the
    orders service took it on), their account goes too: the email and password hash are
    personal data that this process, not a service on the bus, holds. Outermost, so it
    sees the answer the caller gets, after the access gate and any forwarding."""

    def __init__(self, app: Any, store: Accounts) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        match = (_FORGET.fullmatch(scope["path"])
                 if scope["type"] == "http" and scope["method"] == "POST" else None)
        if match is None:
            await self.app(scope, receive, send)
            return
        accepted = False

        async def sending(message: Message) -> None:
            nonlocal accepted
            if message["type"] == "http.response.start":
                accepted = message["status"] == 202
            await send(message)

        await self.app(scope, receive, sending)
        if accepted:
            try:
                await self.store.forget(match.group(1))
            except Exception as error:  # said, and asked again by the next forget
                log.warning("could not delete the account of a forgotten customer: %s",
                            type(error).__name__)
