"""Delivery addresses: registered over HTTP, announced by id, never shared as data.

Other services learn only that a deliveryId exists and whose it is
(DeliveryAddressRegistered); the address itself stays here and is copied onto a job
when a delivery order is prepared.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel
from sqlalchemy import delete, insert, select, update

from pizza.contracts.delivery import DeliveryAddressRegisteredV1
from pizza.eventing import Context
from pizza.eventing.storage import AsyncConnection
from pizza.services.delivery.tables import addresses, jobs
from pizza.web.text import WHITESPACE, LongText, ShortText, stripped_or_none

# Loosely UK: outward code (area letters, district digit, optional letter/digit), then
# the inward code (digit, two letters), with or without the space.
_POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?) ?([0-9][A-Z]{2})$")
# The same rule as the published schema states it (surrounding whitespace allowed).
POSTCODE_PATTERN = r"^\s*[A-Za-z]{1,2}[0-9][A-Za-z0-9]? ?[0-9][A-Za-z]{2}\s*$"


def _uk_postcode(value: str) -> str:
    """Accept "sw1a1aa" or "SW1A 1AA"; store the usual form, "SW1A 1AA"."""
    value = value.strip(WHITESPACE)
    match = _POSTCODE.match(value.upper()) if value.isascii() else None
    if match is None:
        raise ValueError("not a UK postcode (for example SW1A 1AA)")
    return f"{match.group(1)} {match.group(2)}"


Name = ShortText
Line = LongText


class NewAddress(BaseModel):
    """The body of POST /api/delivery-addresses."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    customer_id: Name
    line1: Line
    line2: Annotated[str | None, StringConstraints(max_length=200),
                     AfterValidator(stripped_or_none)] = None
    city: Name
    # The pattern states the rule in the published schema; _uk_postcode normalises.
    postcode: Annotated[str, StringConstraints(max_length=20),
                        Field(json_schema_extra={"pattern": POSTCODE_PATTERN}),
                        AfterValidator(_uk_postcode)]


async def register(ctx: Context, address: NewAddress) -> str:
    """Store an address under a new id and announce it, in one unit of work."""
    delivery_id = str(uuid.uuid4())
    await ctx.db.execute(insert(addresses).values(
        delivery_id=delivery_id, customer_id=address.customer_id, line1=address.line1,
        line2=address.line2 or None, city=address.city, postcode=address.postcode,
        created_at=datetime.now(UTC),
    ))
    ctx.publish(DeliveryAddressRegisteredV1(delivery_id=delivery_id,
                                            customer_id=address.customer_id))
    return delivery_id


async def find(conn: AsyncConnection, delivery_id: str) -> dict[str, str | None] | None:
    """Where a delivery id points, as the job keeps it; None if it is not ours."""
    result = await conn.execute(
        select(addresses.c.line1, addresses.c.line2, addresses.c.city, addresses.c.postcode)
        .where(addresses.c.delivery_id == delivery_id)
    )
    row = result.first()
    return dict(row._mapping) if row is not None else None


async def forget(conn: AsyncConnection, customer_id: str) -> int:
    """Erase a forgotten customer's addresses, and the copies their open jobs took (a
    driver then sees the job without an address); how many addresses there were."""
    theirs = list((await conn.execute(
        select(addresses.c.delivery_id).where(addresses.c.customer_id == customer_id)
    )).scalars())
    if theirs:
        await conn.execute(update(jobs).where(jobs.c.delivery_id.in_(theirs))
                           .values(address=None))
        await conn.execute(delete(addresses).where(addresses.c.delivery_id.in_(theirs)))
    return len(theirs)
