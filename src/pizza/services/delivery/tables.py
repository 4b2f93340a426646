"""The delivery service's own tables (no other service reads them)."""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Index, MetaData, String, Table

metadata = MetaData()

# Delivery owns where customers want their pizza: orders only ever hold the id.
addresses = Table(
    "addresses",
    metadata,
    Column("delivery_id", String(64), primary_key=True),
    Column("customer_id", String(100), nullable=False, index=True),
    Column("line1", String(200), nullable=False),
    Column("line2", String(200)),
    Column("city", String(100), nullable=False),
    Column("postcode", String(10), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# One row per delivery order the kitchen finished. Stage moves forward only:
# awaiting -> out -> delivered, or awaiting/out -> withdrawn. A cancellation that arrives
# before OrderPrepared leaves a "withdrawn" tombstone, so the late event opens nothing.
jobs = Table(
    "jobs",
    metadata,
    Column("order_id", String(100), primary_key=True),
    Column("delivery_id", String(100)),
    # A copy taken when the job opened: where this order goes, whatever changes later.
    Column("address", JSON),  # {line1, line2, city, postcode}; null if the id was unknown
    Column("stage", String(16), nullable=False),
    Column("driver", String(100)),
    Column("correlation_id", String(64)),  # the order's story, for events published later
    Column("cause_id", String(64)),  # its story's newest message: the next event's cause
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),  # when the stage changed
    Index("ix_jobs_stage_updated", "stage", "updated_at"),
)

