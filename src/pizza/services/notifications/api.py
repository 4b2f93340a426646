"""GET /api/mailbox: what the SMTP sink received."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from pizza.eventing import ServiceHost
from pizza.services import paging
from pizza.services.notifications.mailbox import Letter, letters_for
from pizza.services.running import running_host

router: APIRouter = APIRouter(tags=["notifications"])
Host = Annotated[ServiceHost, running_host("notifications")]


class MailboxLetter(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    to: str
    sender: str = Field(alias="from")
    subject: str
    body: str
    received_at: str

    @classmethod
    def of(cls, letter: Letter) -> MailboxLetter:
        return cls(to=letter.to, sender=letter.sender, subject=letter.subject,
                   body=letter.body, received_at=_timestamp(letter.received_at))


def _timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, like message times (SQLite forgets the zone)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


RowId = Annotated[int | None, Query(ge=1, le=2**62, description="a row of the list, "
                                                                "as a Link header names it")]


@router.get("/api/mailbox", response_model=list[MailboxLetter],
            responses=paging.NOT_MODIFIED)
async def read_mailbox(
    request: Request, response: Response, host: Host,
    to: str | None = Query(default=None, max_length=320,
                           description="only mail to this address"),
    q: str | None = Query(default=None, max_length=100,
                          description="only mail whose address or subject contains this "
                                      "(any case)"),
    order: paging.SortOrder = "oldest",
    before: RowId = None,
    after: RowId = None,
    limit: paging.Limit = None,
) -> Response:
    """Emails the SMTP sink received, oldest first: all of them, or one address's. The
    operator's page reads pages instead (``?order=latest&limit=20&q=...``); a Link
    rel=next header names the next page while there is one (services/paging.py)."""
    search = (q or "").strip() or None
    letters = await letters_for(host.db, to, search=search, latest=order == "latest", before=before,
                                after=after, limit=None if limit is None else limit + 1)
    letters = paging.trim(letters, limit, request, response, lambda x: x.id, order)
    return paging.answer([MailboxLetter.of(letter) for letter in letters], request, response)
