"""Who is calling: OAuth2 bearer tokens (JWT), verified against an issuer's keys.

Two issuers, one shape (CONTRACT section 5):

* **Our own** (the default): ``pizza up`` signs tokens with an Ed25519 key kept under
  ``$PIZZA_HOME/identity/`` (made on first use, readable by its owner only), and
  ``pizza token`` prints one. Every process started from the same home accepts them.
  The public key is served at ``/.well-known/jwks.json``.
* **A real identity provider**: ``PIZZA_OIDC_ISSUER`` (and ``PIZZA_OIDC_AUDIENCE``) make
  the system fetch that issuer's OpenID configuration and its published keys (JWKS) and
  accept only its tokens; our issuer is then off.

Signatures and claims are checked by PyJWT; what is ours is the mapping of claims to a
:class:`Caller` (a role, and for a customer the customer id they act for) and a small
cache, so that a token seen a moment ago is not verified again on every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pizza.eventing import settings

ROLES = ("customer", "kitchen", "driver", "counter", "operator")
AUDIENCE = "pizza"
DEFAULT_TTL = 3600.0
MAX_TOKEN_BYTES = 8192  # longer is not a token we or any common provider issue
MAX_CUSTOMER_ID = 100  # as POST /api/orders allows
ALGORITHMS = ["EdDSA", "RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
LEEWAY = 30  # seconds of clock skew allowed on exp/iat/nbf


class Unauthenticated(Exception):
    """No usable token: missing, malformed, expired, or not signed by our issuer."""


@dataclass(frozen=True)
class Caller:
    """Someone the system knows: their subject, roles, and customer id if a customer."""

    subject: str
    roles: frozenset[str]
    customer_id: str | None = None

    @property
    def is_operator(self) -> bool:
        return "operator" in self.roles

    def may_act_for(self, customer_id: str | None) -> bool:
        """An operator acts for anyone; a customer only for themselves."""
        if self.is_operator:
            return True
        return ("customer" in self.roles and customer_id is not None
                and self.customer_id == customer_id)


# -- our own issuer ---------------------------------------------------------------------


class LocalIssuer:
    """The signing key under ``directory`` (made once, 0600) and the tokens it signs."""

    KEY_FILE = "signing-key.pem"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._private: Ed25519PrivateKey | None = None

    @property
    def private_key(self) -> Ed25519PrivateKey:
        if self._private is None:
            self._private = _load_or_make_key(self.directory / self.KEY_FILE)
        return self._private

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        raw = self.public_key.public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
        return hashlib.sha256(raw).hexdigest()[:16]

    @property
    def issuer(self) -> str:
        """A name of this issuer that no other home shares (its key's fingerprint)."""
        return f"urn:pizza:issuer:{self.key_id}"

    def issue(self, role: str, customer: str | None = None,
              ttl: float = DEFAULT_TTL) -> str:
        claims = token_claims(role, customer)
        now = int(time.time())
        claims.update(iss=self.issuer, aud=AUDIENCE, iat=now, nbf=now,
                      exp=now + max(1, int(ttl)), jti=str(uuid.uuid4()))
        return jwt.encode(claims, self.private_key, algorithm="EdDSA",
                          headers={"kid": self.key_id})

    def jwks(self) -> dict[str, Any]:
        """The public key as a JSON Web Key Set (what ``/.well-known/jwks.json`` serves)."""
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(self.public_key, as_dict=True)
        jwk.update(kid=self.key_id, use="sig", alg="EdDSA")
        return {"keys": [jwk]}


def token_claims(role: str, customer: str | None) -> dict[str, Any]:
    """The claims of a token for ``role`` (a customer's names the customer they act for)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: choose from {', '.join(ROLES)}")
    if role == "customer":
        if not customer or len(customer) > MAX_CUSTOMER_ID:
            raise ValueError("a customer token needs --customer ID (1 to 100 characters)")
        return {"sub": customer, "roles": [role], "customer_id": customer}
    if customer is not None:
        raise ValueError("--customer goes with --role customer only")
    return {"sub": role, "roles": [role]}


def _load_or_make_key(path: Path) -> Ed25519PrivateKey:
    """Read the key; if there is none yet, make it, without ever racing another process
    into two different keys (the file is created exclusively, then read back)."""
    with contextlib.suppress(FileNotFoundError):
        return _read_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    try:
        os.link(partial, path)  # fails if another process made it first: theirs wins
    except FileExistsError:
        pass
    finally:
        partial.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def local_issuer(home: Path | None = None) -> LocalIssuer:
    return LocalIssuer((home or settings.home()) / "identity")


def issue_token(role: str, customer: str | None = None, *, ttl: float = DEFAULT_TTL,
                home: Path | None = None) -> str:
    """A token that the system started from ``home`` (default ``$PIZZA_HOME``) accepts."""
    return local_issuer(home).issue(role, customer, ttl)


# -- verifying ----------------------------------------------------------------------------


class Verifier(Protocol):
    async def verify(self, token: str) -> Caller: ...


class _Cached:
    """Tokens verified lately, until they expire (a bounded map; oldest dropped first)."""

    SIZE = 4096

    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, Caller]] = {}

    def get(self, token: str) -> Caller | None:
        hit = self._seen.get(token)
        if hit is None:
            return None
        if hit[0] <= time.time():
            del self._seen[token]
            return None
        return hit[1]

    def put(self, token: str, expires: float, caller: Caller) -> None:
        if len(self._seen) >= self.SIZE:
            del self._seen[next(iter(self._seen))]
        self._seen[token] = (expires, caller)


def _caller(claims: Mapping[str, Any], roles_claim: str, customer_claim: str) -> Caller:
    raw_roles = claims.get(roles_claim)
    if isinstance(raw_roles, str):
        raw_roles = raw_roles.split()
    if not isinstance(raw_roles, list):
        raise Unauthenticated(f"the token has no {roles_claim!r} claim")
    roles = frozenset(r for r in raw_roles if isinstance(r, str) and r in ROLES)
    if not roles:
        raise Unauthenticated("the token carries none of the system's roles")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("the token has no subject")
    customer = claims.get(customer_claim, subject if "customer" in roles else None)
    if "customer" in roles and (not isinstance(customer, str) or not customer
                                or len(customer) > MAX_CUSTOMER_ID):
        raise Unauthenticated("a customer's token must name the customer (at most 100 "
                              "characters)")
    return Caller(subject=subject[:200], roles=roles,
                  customer_id=customer if isinstance(customer, str) else None)


def _decode(token: str, key: Any, issuer: str, audience: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=ALGORITHMS, audience=audience, issuer=issuer,
            leeway=LEEWAY, options={"require": ["exp", "iss", "aud", "sub"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the token has expired") from None
    except jwt.InvalidTokenError as error:
        raise Unauthenticated(f"the token is not valid here: {str(error)[:100]}") from None
    return claims


def _check_shape(token: str) -> dict[str, Any]:
    if len(token) > MAX_TOKEN_BYTES:
        raise Unauthenticated("the token is too long")
    try:
        return jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise Unauthenticated("the token is not a JWT") from None


class LocalVerifier:
    """Accepts the tokens of our own issuer (the key under ``$PIZZA_HOME/identity``)."""

    def __init__(self, issuer: LocalIssuer) -> None:
        self.issuer = issuer
        self._cache = _Cached()

    async def verify(self, token: str) -> Caller:
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        _check_shape(token)
        claims = _decode(token, self.issuer.public_key, self.issuer.issuer, AUDIENCE)
        caller = _caller(claims, "roles", "customer_id")
        self._cache.put(token, float(claims["exp"]), caller)
        return caller


class OidcVerifier:
    """Accepts the tokens of an OpenID Connect provider, checked against its published
    keys. Keys are fetched at first use and again when a token names a key id we do not
    know (the provider rotated), at most every ``REFRESH_SECONDS``."""

    REFRESH_SECONDS = 30.0

    def __init__(self, issuer: str, audience: str, *, roles_claim: str = "roles",
                 customer_claim: str = "customer_id") -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.roles_claim = roles_claim
        self.customer_claim = customer_claim
        self._keys: dict[str, Any] = {}
        self._fetched_at = -1e9
        self._lock = asyncio.Lock()
        self._cache = _Cached()

    async def verify(self, token: str) -> Caller:
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        header = _check_shape(token)
        kid = header.get("kid")
        key = await self._key(kid if isinstance(kid, str) else None)
        claims = _decode(token, key, self.issuer, self.audience)
        caller = _caller(claims, self.roles_claim, self.customer_claim)
        self._cache.put(token, float(claims["exp"]), caller)
        return caller

    async def _key(self, kid: str | None) -> Any:
        if kid in self._keys or (kid is None and len(self._keys) == 1):
            return self._keys[kid] if kid is not None else next(iter(self._keys.values()))
        async with self._lock:
            if time.monotonic() - self._fetched_at > self.REFRESH_SECONDS:
                await self._fetch()
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        if kid not in self._keys:
            raise Unauthenticated("the token is signed by a key the issuer does not publish")
        return self._keys[kid]

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                discovery = await client.get(f"{self.issuer}/.well-known/openid-configuration")
                discovery.raise_for_status()
                jwks_uri = discovery.json()["jwks_uri"]
                answer = await client.get(jwks_uri)
                answer.raise_for_status()
                keys = jwt.PyJWKSet.from_dict(answer.json())
        except (httpx.HTTPError, KeyError, ValueError, jwt.PyJWTError) as error:
            raise Unauthenticated(
                f"the identity provider's keys cannot be fetched: {str(error)[:100]}") from None
        self._keys = {key.key_id or "": key.key for key in keys.keys}


def verifier() -> Verifier:
    """The verifier the settings ask for: the OIDC issuer if one is set, else our own."""
    from pizza import config

    current = config.settings()
    if current.oidc_issuer:
        return OidcVerifier(current.oidc_issuer, current.oidc_audience,
                            roles_claim=current.oidc_roles_claim,
                            customer_claim=current.oidc_customer_claim)
    return LocalVerifier(local_issuer())
