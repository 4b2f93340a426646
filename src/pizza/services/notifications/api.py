"""GET /api/mailbox: what the SMTP sink received."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from pizza.services.notifications.mailbox import Letter, letters_for

router: APIRouter = APIRouter(tags=["notifications"])


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


@router.get("/api/mailbox", response_model=list[MailboxLetter])
async def read_mailbox(
    to: str | None = Query(default=None, max_length=320,
                           description="only mail to this address"),
) -> list[MailboxLetter]:
    """Emails the SMTP sink received, oldest first: all of them, or one address's."""
    return [MailboxLetter.of(letter) for letter in await letters_for(to)]
