"""A service's refusal (eventing/errors.py) answered in the CONTRACT's error shape, with
its kind's status, by the entry point (web/errors.py), whatever raised it."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from pizza.eventing.errors import Conflict, DomainError, Invalid, NotFound, TooLarge, Unavailable
from pizza.web import errors


class TicketRefused(Conflict):
    """As a service declares its own: a kind of Conflict with a code of its own."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"the ticket is {stage}", {"stage": stage}, code="wrong-stage")


def raising(error: Exception) -> FastAPI:
    app = FastAPI()
    errors.install(app)

    @app.get("/refused")
    async def refused() -> None:
        raise error

    return app


@pytest.mark.parametrize(("error", "status", "code", "details"), [
    (NotFound("no such order", {"orderId": "x"}), 404, "not-found", {"orderId": "x"}),
    (Conflict("too late"), 409, "conflict", None),
    (TicketRefused("prepared"), 409, "wrong-stage", {"stage": "prepared"}),
    (Invalid("not on the menu", ["x"], code="unknown-menu-item"), 422, "unknown-menu-item",
     ["x"]),
    (TooLarge("the body is larger", {"maxBytes": 1}), 413, "too-large", {"maxBytes": 1}),
    (Unavailable("try later", code="loyalty-unavailable"), 503, "loyalty-unavailable", None),
    (DomainError("no"), 400, "refused", None),
])
async def test_each_kind_of_refusal_is_answered_with_its_status_and_shape(
        error: DomainError, status: int, code: str, details: object) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=raising(error)),
                                 base_url="http://test") as http:
        answer = await http.get("/refused")
    assert answer.status_code == status
    assert answer.json() == {"error": {"code": code, "message": error.message,
                                       "details": details}}
