"""Why a service refuses a request, in its own words: no HTTP here.

A service raises one of these from its domain code or its routes; the entry point maps
each kind to its answer in one place (``pizza.web.errors``: NotFound is 404, Conflict
409, Invalid 422, TooLarge 413, Unavailable 503), so the services never import the web.

    raise Conflict(f"order {order_id} was cancelled", {"stage": stage},
                   code="ticket-withdrawn")
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A refusal: a stable machine ``code``, a ``message`` for people, and ``details``
    (any JSON, or None). Each kind has a default code; a service may name its own."""

    code = "refused"

    def __init__(self, message: str, details: Any = None, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code


class NotFound(DomainError):
    """No such thing (or none the caller may see)."""

    code = "not-found"


class Conflict(DomainError):
    """The thing exists, but its state does not allow this now."""

    code = "conflict"


class Invalid(DomainError):
    """The request is well formed but cannot be accepted as it is."""

    code = "invalid-request"


class TooLarge(DomainError):
    """The request is larger than the service takes."""

    code = "too-large"


class Unavailable(DomainError):
    """Something the service needs cannot answer now; trying again later may work."""

    code = "unavailable"


__all__ = ["Conflict", "DomainError", "Invalid", "NotFound", "TooLarge", "Unavailable"]
