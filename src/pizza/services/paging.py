"""Pages of the staff lists: the kitchen's tickets, delivery's jobs, the pickup counter.

The contract's answers (CONTRACT.md section 2) stay lists; paging is additive. Without
parameters a list answers what it always did. A board asks for less:

- ``stage`` (repeatable): only these stages;
- ``finishedWithin`` (seconds): a finished item (prepared, delivered, collected) only if
  it finished that recently; work still to do is always listed. This is how finished
  work drops off a board after a while instead of piling up;
- ``order``: ``oldest`` (by arrival, oldest first: the contract's order) or ``latest``
  (by when the stage last changed, latest first: the history);
- ``limit`` (1..200): at most this many. When more are left, the answer carries
  ``Link: <...>; rel="next"`` (RFC 8288) with the next page's relative URL;
- ``before`` / ``after`` (an orderId from the list, as the Link header gives it): only
  items before or after that one in the list's sort key. ``order=latest`` pages on with
  ``before``; ``order=oldest`` with ``after``. An id the service never saw has nothing
  before or after it: the page is empty (items are never deleted, so a cursor from a
  Link header stays good).

Every query stays on the ``(stage, updated_at)`` index each table already has for the
simulation, or on the few rows of work still to do.

A board asks the same question every second or two and the answer seldom changes, so a
list answers with an ``ETag`` (and ``Cache-Control: private, no-cache``): the browser
asks again with ``If-None-Match`` and an unchanged answer is a bodiless ``304``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Query, Request, Response
from pydantic import BaseModel, TypeAdapter
from sqlalchemy import Select, Table, and_, or_, select

from pizza.eventing.storage import AsyncConnection

Order = Literal["oldest", "latest"]
MAX_LIMIT = 200

# The query parameters every staff list takes (FastAPI dependencies, bounded).
Limit = Annotated[int | None, Query(ge=1, le=MAX_LIMIT,
                                    description="at most this many (1..200); "
                                                "a Link rel=next header names the next page")]
FinishedWithin = Annotated[int | None, Query(
    alias="finishedWithin", ge=1, le=7 * 24 * 3600,
    description="finished items only if they finished within this many seconds; "
                "work still to do is always listed")]
SortOrder = Annotated[Order, Query(
    description="oldest: by arrival, oldest first (the default); "
                "latest: by the last change of stage, latest first (history)")]
Cursor = Annotated[str | None, Query(max_length=100, description="an orderId from the list")]


@dataclass(frozen=True)
class Window:
    """What part of a staged list to read."""

    stages: Sequence[str]
    finished: Sequence[str] = ()  # which stages count as finished work
    finished_within: int | None = None
    order: Order = "oldest"
    before: str | None = None
    after: str | None = None
    limit: int | None = None


async def staged_page(conn: AsyncConnection, table: Table, columns: Sequence[Any],
                      window: Window, now: datetime | None = None) -> list[Any]:
    """The rows of ``table`` in ``window`` (one more than ``limit``, to tell that more
    are left). ``table`` has order_id, stage, created_at and updated_at columns."""
    key = table.c.created_at if window.order == "oldest" else table.c.updated_at
    query: Select[Any] = select(*columns).where(table.c.stage.in_(window.stages))
    if window.finished_within is not None:
        since = (now or datetime.now(UTC)) - timedelta(seconds=window.finished_within)
        doing = [s for s in window.stages if s not in window.finished]
        done = [s for s in window.stages if s in window.finished]
        query = query.where(or_(table.c.stage.in_(doing),
                                and_(table.c.stage.in_(done), table.c.updated_at >= since)))
    for cursor, earlier in ((window.before, True), (window.after, False)):
        if cursor is None:
            continue
        at = (await conn.execute(select(key).where(table.c.order_id == cursor))).scalar()
        if at is None:
            return []  # nothing is known to come before or after what is not here
        if earlier:
            query = query.where(or_(key < at, and_(key == at, table.c.order_id < cursor)))
        else:
            query = query.where(or_(key > at, and_(key == at, table.c.order_id > cursor)))
    if window.order == "oldest":
        query = query.order_by(key, table.c.order_id)
    else:
        query = query.order_by(key.desc(), table.c.order_id.desc())
    if window.limit is not None:
        query = query.limit(window.limit + 1)
    return list((await conn.execute(query)).all())


def trim(rows: list[Any], limit: int | None, request: Request, response: Response,
         cursor_of: Any, order: Order) -> list[Any]:
    """The page itself; a ``Link: rel="next"`` header on ``response`` if more are left
    (``rows`` holds one more than ``limit`` then)."""
    if limit is None or len(rows) <= limit:
        return rows
    page = rows[:limit]
    onward = "before" if order == "latest" else "after"
    url = request.url.remove_query_params(["before", "after"]).include_query_params(
        **{onward: cursor_of(page[-1])})
    response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    return page


def stages_or(asked: Sequence[str] | None, default: Sequence[str]) -> list[str]:
    """The stages asked for (each once), or the list's default ones."""
    return list(dict.fromkeys(asked)) if asked else list(default)


# Documented on each list's OpenAPI entry.
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "unchanged since the ETag named in If-None-Match"}}


def answer(items: Sequence[BaseModel], request: Request, response: Response) -> Response:
    """The list as JSON with a weak ETag of its bytes; ``304`` with no body if the caller
    already holds exactly this answer (If-None-Match). Keeps ``response``'s Link header."""
    body = TypeAdapter(list[Any]).dump_json(
        [item.model_dump(mode="json", by_alias=True) for item in items])
    tag = 'W/"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    headers = {"ETag": tag, "Cache-Control": "private, no-cache", "Vary": "Authorization"}
    if "Link" in response.headers:
        headers["Link"] = response.headers["Link"]
    held = {t.strip() for t in request.headers.get("if-none-match", "")[:1000].split(",")}
    if tag in held or tag.removeprefix("W/") in held:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
