"""Text fields of request bodies whose published schema and whose check agree.

Pydantic's ``strip_whitespace`` strips Python's whitespace, then counts: a name of "\\v"
was refused as empty while the OpenAPI document (``minLength: 1``) promised to accept it,
and a schema-driven client (or schemathesis) found the gap. Here the rule is stated in
the schema as JSON Schema states it, ``pattern: "\\S"`` (some character that is not
ECMAScript whitespace), and checked with exactly that whitespace; the value is then
stored stripped of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

# ECMAScript's WhiteSpace and LineTerminator: what "\s" means in a JSON Schema pattern.
WHITESPACE = ("\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
              "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff")


def _stripped(value: str) -> str:
    stripped = value.strip(WHITESPACE)
    if not stripped:
        raise ValueError("must not be blank")
    return stripped


def _text(max_length: int) -> Any:
    """A required, non-blank string of at most ``max_length`` characters, stored
    without surrounding whitespace."""
    return Annotated[str, StringConstraints(min_length=1, max_length=max_length),
                     Field(json_schema_extra={"pattern": r"\S"}), AfterValidator(_stripped)]


def stripped_or_none(value: str | None) -> str | None:
    """An optional text: blank counts as absent."""
    return (value.strip(WHITESPACE) or None) if value else None


if TYPE_CHECKING:
    ShortText = str
    LongText = str
else:
    ShortText = _text(100)  # names, ids
    LongText = _text(200)  # address lines
