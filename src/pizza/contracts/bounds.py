"""The bounds every message field keeps, so hostile input is refused when it is decoded.

A message on the bus is untrusted until validated: anyone who can publish on a subject
can put a 100 KB "id" or a list of a million lines in it. Every field of every message
therefore has a bound here, checked by pydantic when the consumer decodes the message
(``registry.decode``). A message outside them is *malformed*: it goes to the dead letters
at once, before any handler, database statement or log line sees it.

The bounds are wider than anything our own producers write (a producer cannot even build
a message outside them: constructing it validates), so no real message is refused:

* Order and delivery ids are UUIDs (orders and delivery make them with ``uuid4``).
* A customer id is whatever the customer gave the HTTP API, which allows 100 characters.
* Menu item ids are the menu's slugs.
* Texts (names, reasons, subjects, bodies) have a length fit for what they carry.
* Lists and numbers have ranges far above what ``POST /api/orders`` accepts.

Adding them tightened the published schemas; ``schemas/`` was re-snapshotted with an
explicit acknowledgement (see the README, "Evolving events without breaking anyone").
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
MAX_ID = 64

# An order's id, made by orders (uuid4, lower case).
OrderId = Annotated[str, StringConstraints(max_length=MAX_ID, pattern=UUID_PATTERN)]
# A delivery address's id, made by delivery (uuid4, lower case).
DeliveryId = Annotated[str, StringConstraints(max_length=MAX_ID, pattern=UUID_PATTERN)]
# Chosen by the customer; POST /api/orders and /api/delivery-addresses allow 100.
CustomerId = Annotated[str, StringConstraints(min_length=1, max_length=100)]
# A slug of the menu ("margherita", "bbq-jackfruit").
MenuItemId = Annotated[str, StringConstraints(max_length=MAX_ID,
                                              pattern=r"^[a-z0-9][a-z0-9-]*$")]
ItemName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
PersonName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Reason = Annotated[str, StringConstraints(max_length=1000)]
# An address as an email header carries it: "Name <someone@example.com>" at most.
EmailAddress = Annotated[str, StringConstraints(min_length=3, max_length=320)]
EmailSubject = Annotated[str, StringConstraints(max_length=300)]
EmailBody = Annotated[str, StringConstraints(max_length=20_000)]
# An email's Message-ID, "<command id@domain>".
MessageId = Annotated[str, StringConstraints(min_length=1, max_length=400)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]

Quantity = Annotated[int, Field(ge=1, le=1000)]
Pounds = Annotated[float, Field(ge=0, le=1_000_000)]
UnitPrice = Annotated[float, Field(ge=0, le=10_000)]
Points = Annotated[int, Field(ge=0, le=1_000_000_000)]
MAX_LINES = 100
