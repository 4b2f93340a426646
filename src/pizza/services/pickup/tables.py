"""The pickup counter's own table (no other service reads it)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, MetaData, String, Table

metadata = MetaData()

# One row per prepared pickup order. Stage moves forward only: waiting -> collected, or
# waiting -> withdrawn. A cancellation that arrives before OrderPrepared leaves a
# "withdrawn" tombstone, so the late event puts nothing on the counter.
counter = Table(
    "counter",
    metadata,
    Column("order_id", String(100), primary_key=True),
    Column("stage", String(16), nullable=False),
    Column("correlation_id", String(64)),  # the order's story, for events published later
    Column("cause_id", String(64)),  # its story's newest message: the next event's cause
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),  # when the stage changed
    Index("ix_counter_stage_updated", "stage", "updated_at"),
)

