"""GET /api/loyalty/{customerId}: a customer's points, from our ledger or the SaaS."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from pizza.eventing.errors import Unavailable
from pizza.services.loyalty import ledger
from pizza.services.loyalty.running import LoyaltyService
from pizza.services.loyalty.saas_adapter import (
    LoyaltyRefused,
    LoyaltyUnavailable,
    SaasConnection,
)
from pizza.services.running import running_service
from pizza.web.access import CurrentCaller, own_or_not_found

router: APIRouter = APIRouter(tags=["loyalty"])


class LoyaltyBalance(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    customer_id: str
    points: int


# Customer ids have at most 100 characters (POST /api/orders): a longer one is refused
# (422) before anything, the SaaS included, is asked about it.
CustomerId = Annotated[str, Path(min_length=1, max_length=100)]
Loyalty = Annotated[LoyaltyService, running_service("loyalty", LoyaltyService)]


@router.get("/api/loyalty/{customer_id}", response_model=LoyaltyBalance, responses={
    404: {"description": "another customer's points (a customer sees only their own)"},
    503: {"description": "the loyalty SaaS cannot answer now"}})
async def loyalty_balance(customer_id: CustomerId, caller: CurrentCaller,
                          loyalty: Loyalty) -> LoyaltyBalance:
    """One point per whole pound of each completed order; 0 for a customer with none."""
    own_or_not_found(caller, customer_id, "points for this customer")
    if loyalty.saas is not None:
        points = await _points_from_saas(loyalty.saas, customer_id)
    else:
        async with loyalty.read() as conn:
            points = await ledger.balance(conn, customer_id)
    return LoyaltyBalance(customer_id=customer_id, points=points)


async def _points_from_saas(saas: SaasConnection, customer_id: str) -> int:
    try:
        return await saas.current().balance(customer_id)
    except (LoyaltyUnavailable, LoyaltyRefused) as error:
        retry_after = getattr(error, "retry_after", None)
        raise Unavailable("the loyalty provider cannot answer now; try again later",
                          {"reason": str(error),
                           "retryAfter": round(retry_after, 1) if retry_after else None},
                          code="loyalty-unavailable") from error
