"""The kitchen's own tables (no other service reads them)."""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Index, MetaData, String, Table

metadata = MetaData()

# One row per order the kitchen heard of. Stage moves forward only:
# new -> preparing -> prepared, or new/preparing/prepared -> withdrawn. A cancellation that
# arrives before its confirmation leaves a "withdrawn" tombstone, so the late
# confirmation finds the row taken and opens nothing.
tickets = Table(
    "tickets",
    metadata,
    Column("order_id", String(100), primary_key=True),
    Column("items", JSON, nullable=False),  # [{menuItemId, name, quantity}]
    Column("fulfilment", String(16)),  # null on a tombstone
    Column("delivery_id", String(100)),
    Column("stage", String(16), nullable=False),
    # The order's story: events the kitchen publishes later, from a click or the
    # simulation, carry it so the whole order shares one correlationId.
    Column("correlation_id", String(64)),
    # The last message of the ticket's story (the OrderConfirmed that opened it, then each
    # event it published): what the next click's event follows on from (its causationId).
    Column("cause_id", String(64)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),  # when the stage changed
    # The list of open tickets and the simulation both look tickets up by stage and age.
    Index("ix_tickets_stage_updated", "stage", "updated_at"),
)

