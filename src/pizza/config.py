"""Settings of the pizza system (not the kernel), read from PIZZA_* variables.

``pizza up`` and ``pizza serve`` may override them with their command-line options via
``configure()``. No service reads ``settings()``: the composition root (``app.load``)
gives a ``Settings`` to each service's factory, which keeps what the service needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pizza.eventing.settings import number


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


def _choice(name: str, allowed: tuple[str, ...]) -> Any:
    value = os.environ.get(name, allowed[0])
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class Settings:
    # --simulate: kitchen, drivers and counter act by themselves.
    simulate: bool = field(default_factory=lambda: _flag("PIZZA_SIMULATE"))
    cook_seconds: float = field(default_factory=lambda: number("PIZZA_COOK_SECONDS", 0))
    drive_seconds: float = field(default_factory=lambda: number("PIZZA_DRIVE_SECONDS", 0))
    # Where notifications sends mail; `pizza up` starts an SMTP sink here unless told not to.
    smtp_host: str = field(default_factory=lambda: os.environ.get("PIZZA_SMTP_HOST", "127.0.0.1"))
    smtp_port: int = field(default_factory=lambda: int(number("PIZZA_SMTP_PORT", 8025)))
    # Start an SMTP sink (the mailbox) on smtp_host:smtp_port in this process (pizza up).
    smtp_sink: bool = field(default_factory=lambda: _flag("PIZZA_SMTP_SINK"))
    mail_from: str = field(
        default_factory=lambda: os.environ.get("PIZZA_MAIL_FROM", "orders@plant-based.pizza"))
    # The query side's store: SQLite unless a Redis URL is given.
    redis_url: str | None = field(default_factory=lambda: os.environ.get("PIZZA_REDIS_URL") or None)
    # Loyalty: our own ledger, or the third-party SaaS over HTTP.
    loyalty_backend: Literal["ledger", "saas"] = field(
        default_factory=lambda: "saas" if os.environ.get("PIZZA_LOYALTY_BACKEND") == "saas"
        else "ledger")
    loyalty_saas_url: str | None = field(
        default_factory=lambda: os.environ.get("PIZZA_LOYALTY_SAAS_URL") or None)
    # OrderConfirmed v1 beside v2: auto (while some consumer is registered on v1), always, never.
    order_confirmed_v1: Literal["auto", "always", "never"] = field(
        default_factory=lambda: _choice("PIZZA_ORDER_CONFIRMED_V1", ("auto", "always", "never"))
    )
    # People's identity: an OpenID Connect provider whose tokens are accepted instead of
    # our own issuer's (keys under PIZZA_HOME/identity), and the claims that carry roles.
    oidc_issuer: str | None = field(
        default_factory=lambda: os.environ.get("PIZZA_OIDC_ISSUER") or None)
    oidc_audience: str = field(
        default_factory=lambda: os.environ.get("PIZZA_OIDC_AUDIENCE") or "pizza")
    oidc_roles_claim: str = field(
        default_factory=lambda: os.environ.get("PIZZA_OIDC_ROLES_CLAIM") or "roles")
    oidc_customer_claim: str = field(
        default_factory=lambda: os.environ.get("PIZZA_OIDC_CUSTOMER_CLAIM") or "customer_id")
    # Browsers: origins allowed to call the API from their pages (CORS), comma separated.
    cors_origins: tuple[str, ...] = field(default_factory=lambda: tuple(
        o.strip() for o in os.environ.get("PIZZA_CORS_ORIGINS", "").split(",") if o.strip()))
    # Requests without a valid token (the public routes and failed sign-ins), per client.
    rate_limit: str = field(
        default_factory=lambda: os.environ.get("PIZZA_RATE_LIMIT") or "50/second;1000/minute")


_current: Settings | None = None


def settings() -> Settings:
    global _current
    if _current is None:
        _current = Settings()
    return _current


def configure(**changes: object) -> Settings:
    """Override settings (command-line options, tests)."""
    global _current
    _current = replace(settings(), **changes)  # type: ignore[arg-type]
    return _current


def reset() -> None:
    global _current
    _current = None
