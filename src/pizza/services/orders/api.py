"""The orders service's HTTP side: the menu, placing and cancelling orders.

``GET /api/orders/{orderId}`` is not here: reading an order is the tracking service's
read model (the query side). Besides the CONTRACT's routes there is one small read,
``GET /api/orders/{orderId}/emails``, listing the emails sent about an order and what
notifications answered (``[{"kind": "receipt"|"thanks"|"cancelled", "status":
"pending"|"sent"|"failed", "detail"}]``); it is handy in demos of commands and replies.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy import select

from pizza.contracts.notifications import SendEmailV1
from pizza.contracts.orders import OrderCancelledV1, OrderConfirmedV1, OrderConfirmedV2
from pizza.eventing.errors import Invalid, NotFound, TooLarge
from pizza.eventing.service import fixed_data, route_causes
from pizza.services.orders import cancelling, menu, placing
from pizza.services.orders.running import OrdersService
from pizza.services.orders.tables import order_emails, orders
from pizza.services.running import running_service
from pizza.web.access import CurrentCaller, acting_for, own_or_not_found

MAX_BODY_BYTES = 64 * 1024
MAX_KEY_LENGTH = 255

router = APIRouter(tags=["orders"])

# An id longer than any we make is refused (422) before anything looks it up.
OrderId = Annotated[str, Path(alias="orderId", min_length=1, max_length=64)]
Orders = Annotated[OrdersService, running_service("orders", OrdersService)]


def _inline_schema(model: type[placing.PlaceOrder]) -> dict[str, Any]:
    """The model's JSON Schema with its $defs inlined, for the OpenAPI request body."""
    schema = model.model_json_schema(by_alias=True)
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    inlined: dict[str, Any] = resolve(schema)
    return inlined


@router.get("/api/menu", openapi_extra=fixed_data())
async def get_menu() -> list[dict[str, Any]]:
    """The menu, prices in pounds."""
    return [item.to_json() for item in menu.MENU]


@router.post(
    "/api/orders",
    status_code=202,
    # A delivery order whose id is not known yet is confirmed later (handlers.py).
    openapi_extra=route_causes(
        OrderConfirmedV1, OrderConfirmedV2, SendEmailV1,
        requestBody={"required": True, "content": {
            "application/json": {"schema": _inline_schema(placing.PlaceOrder)}}}),
    responses={400: {"description": "the body is not JSON"},
               413: {"description": "body larger than 64 KiB"},
               422: {"description": "invalid order"}},
)
async def place_order(
    request: Request,
    caller: CurrentCaller,
    service: Orders,
    # The schema states the rule _valid_key applies (answered with its own code).
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", json_schema_extra={
        "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": r"\S"})] = None,
) -> JSONResponse:
    """Accept an order: 202 with its id and Location; the rest happens through events.

    The body is read here rather than by FastAPI so that an oversized one is refused
    (413) before it is read whole or parsed.
    """
    body = await _read_body(request)
    try:
        order = placing.PlaceOrder.model_validate_json(body)
    except ValidationError as error:
        # The app's handler turns this into 400 (malformed JSON) or 422, in the error shape.
        raise RequestValidationError(error.errors(include_url=False)) from None
    acting_for(caller, order.customer_id)
    placed = await placing.place(service, order, _valid_key(idempotency_key))
    return JSONResponse(status_code=202,
                        content={"orderId": placed.order_id, "status": "accepted"},
                        headers={"Location": f"/api/orders/{placed.order_id}"})


@router.post("/api/orders/{orderId}/cancel", status_code=202,
             openapi_extra=route_causes(OrderCancelledV1, SendEmailV1),
             responses={404: {"description": "no such order"},
                        409: {"description": "already prepared or completed"}})
async def cancel_order(order_id: OrderId, caller: CurrentCaller,
                       service: Orders) -> JSONResponse:
    """Cancel an order the kitchen has not finished; cancelling twice is harmless."""
    if not caller.is_operator:
        async with service.read() as conn:
            owner = (await conn.execute(select(orders.c.customer_id)
                                        .where(orders.c.id == order_id))).scalar()
        own_or_not_found(caller, owner, "such order")
    await cancelling.cancel(service, order_id)
    return JSONResponse(status_code=202, content={"orderId": order_id, "status": "cancelled"})


@router.get("/api/orders/{orderId}/emails", responses={404: {"description": "no such order"}})
async def order_emails_sent(order_id: OrderId, caller: CurrentCaller,
                            service: Orders) -> list[dict[str, Any]]:
    """The emails sent about an order and their answers, oldest first (not in CONTRACT)."""
    async with service.read() as conn:
        known = (await conn.execute(
            select(orders.c.customer_id).where(orders.c.id == order_id))).first()
        if known is None or not caller.may_act_for(known.customer_id):
            raise NotFound("no such order", {"orderId": order_id})
        rows = (await conn.execute(
            select(order_emails.c.kind, order_emails.c.status, order_emails.c.detail)
            .where(order_emails.c.order_id == order_id)
            .order_by(order_emails.c.created_at, order_emails.c.kind))).all()
    return [{"kind": row.kind, "status": row.status, "detail": row.detail} for row in rows]


async def _read_body(request: Request) -> bytes:
    """The body, or 413 if it is (or claims to be) over the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large() -> TooLarge:
    return TooLarge(f"the body is larger than {MAX_BODY_BYTES} bytes",
                    {"maxBytes": MAX_BODY_BYTES})


def _valid_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise Invalid(f"Idempotency-Key must have 1 to {MAX_KEY_LENGTH} characters",
                      code="invalid-idempotency-key")
    return key
