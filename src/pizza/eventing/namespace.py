"""The namespace of one system on the bus: every name the kernel gives a broker.

Several systems may share one NATS server (a staging and a demo, two teams' copies) as
long as none reads the other's messages. Everything the kernel names on the broker
comes from one prefix, so two systems with different prefixes never meet:

=========================  ==============================  ==============================
what                       default (``pizza``)             ``Namespace("acme")``
=========================  ==============================  ==============================
event subjects             ``pizza.events.<src>.<T>.v<n>``  ``acme.events.<src>.<T>.v<n>``
command subjects           ``pizza.commands....``          ``acme.commands....``
reply subjects             ``pizza.replies.<service>``     ``acme.replies.<service>``
dead letters               ``pizza.deadletters....``       ``acme.deadletters....``
streams                    ``PIZZA_EVENTS``, ...           ``ACME_EVENTS``, ...
key-value buckets          ``PIZZA_USAGE``, ``PIZZA_KEYS``  ``ACME_USAGE``, ``ACME_KEYS``
dead-letter headers        ``Pizza-Dead-Reason``, ...      ``Acme-Dead-Reason``, ...
CloudEvents ``type``       ``pizza.<src>.<T>.v<n>``        ``acme.<src>.<T>.v<n>``
a service's inbox          ``_INBOX_<service>``            ``_INBOX_acme~<service>``
=========================  ==============================  ==============================

The default is CONTRACT.md's names exactly: nothing on the wire changes unless a
Runtime is given another namespace. Declarations (a message class's ``info.subject``, a
subscription's subject, a tap) are written in the default namespace's terms; the kernel
turns them into its namespace's where it routes (``subject``, ``local``), once per
queue or per message class, never per message.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pizza.eventing.catalog import MessageInfo

DEFAULT_PREFIX = "pizza"
# One NATS token of lower-case letters, digits, '_' and '-': it is also the first part
# of stream and bucket names (upper-cased), which allow no more than that.
_PREFIX = re.compile(r"[a-z0-9_-]+")
MAX_PREFIX_LENGTH = 32  # leaves a subject's 255 characters to the rest
MAX_SUBJECT_LENGTH = 255  # the outbox's subject column

# A NATS subject token: printable ASCII but for the separator and the wildcards.
_SUBJECT = re.compile(r"[!-)+-\-/-=?-~]+(\.[!-)+-\-/-=?-~]+)*")

# The four kinds of traffic, each a stream of its own: (subject token, stream suffix).
KINDS: tuple[tuple[str, str], ...] = (
    ("events", "EVENTS"),
    ("commands", "COMMANDS"),
    ("replies", "REPLIES"),
    ("deadletters", "DEADLETTERS"),
)


@dataclass(frozen=True, slots=True)
class Namespace:
    """All of one system's names on the bus, derived once from ``prefix``."""

    prefix: str = DEFAULT_PREFIX
    events: str = field(init=False, repr=False, compare=False)  # "pizza.events"
    commands: str = field(init=False, repr=False, compare=False)
    replies: str = field(init=False, repr=False, compare=False)
    dead_letters: str = field(init=False, repr=False, compare=False)
    # stream name -> the subjects it holds, e.g. {"PIZZA_EVENTS": "pizza.events.>", ...}
    streams: Mapping[str, str] = field(init=False, repr=False, compare=False)
    events_stream: str = field(init=False, repr=False, compare=False)
    commands_stream: str = field(init=False, repr=False, compare=False)
    replies_stream: str = field(init=False, repr=False, compare=False)
    dead_letters_stream: str = field(init=False, repr=False, compare=False)
    usage_bucket: str = field(init=False, repr=False, compare=False)  # the live registry
    keys_bucket: str = field(init=False, repr=False, compare=False)  # personal data's keys
    header_prefix: str = field(init=False, repr=False, compare=False)  # "Pizza"
    # Headers a dead letter carries beside the original payload.
    dead_reason: str = field(init=False, repr=False, compare=False)
    dead_error: str = field(init=False, repr=False, compare=False)
    dead_attempts: str = field(init=False, repr=False, compare=False)
    dead_subject: str = field(init=False, repr=False, compare=False)
    dead_consumer: str = field(init=False, repr=False, compare=False)
    truncated_from: str = field(init=False, repr=False, compare=False)
    is_default: bool = field(init=False, repr=False, compare=False)
    _kinds: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)
    _rebase: str = field(init=False, repr=False, compare=False)
    _replies_dot: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        prefix = self.prefix
        if not isinstance(prefix, str) or not prefix:
            raise ValueError("a namespace is one NATS token: it cannot be empty")
        if len(prefix) > MAX_PREFIX_LENGTH:
            raise ValueError(f"namespace {prefix[:40]!r}... is longer than "
                             f"{MAX_PREFIX_LENGTH} characters")
        if _PREFIX.fullmatch(prefix) is None:
            raise ValueError(f"namespace {prefix!r} is not one NATS token of lower-case "
                             "letters, digits, '_' and '-' (no dots, wildcards or spaces)")
        upper = prefix.upper()
        header = "-".join(part[:1].upper() + part[1:] for part in prefix.split("-"))
        values = {
            "events": f"{prefix}.events",
            "commands": f"{prefix}.commands",
            "replies": f"{prefix}.replies",
            "dead_letters": f"{prefix}.deadletters",
            "streams": MappingProxyType({f"{upper}_{suffix}": f"{prefix}.{token}.>"
                                         for token, suffix in KINDS}),
            "events_stream": f"{upper}_EVENTS",
            "commands_stream": f"{upper}_COMMANDS",
            "replies_stream": f"{upper}_REPLIES",
            "dead_letters_stream": f"{upper}_DEADLETTERS",
            "usage_bucket": f"{upper}_USAGE",
            "keys_bucket": f"{upper}_KEYS",
            "header_prefix": header,
            "dead_reason": f"{header}-Dead-Reason",
            "dead_error": f"{header}-Dead-Error",
            "dead_attempts": f"{header}-Dead-Attempts",
            "dead_subject": f"{header}-Original-Subject",
            "dead_consumer": f"{header}-Consumer",
            "truncated_from": f"{header}-Truncated-From",
            "is_default": prefix == DEFAULT_PREFIX,
            # (subject prefix with its dot, stream): how a subject finds its stream
            "_kinds": tuple((f"{prefix}.{token}.", f"{upper}_{suffix}")
                            for token, suffix in KINDS),
            "_rebase": f"{DEFAULT_PREFIX}.",
            "_replies_dot": f"{prefix}.replies.",
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __str__(self) -> str:
        return self.prefix

    # -- subjects -------------------------------------------------------------------------

    def subject(self, info: MessageInfo) -> str:
        """Where a message of this type and version is published in this namespace (a
        reply's is the pattern of every reply subject)."""
        if self.is_default:
            return info.subject
        return self.local(info.subject)

    def local(self, subject: str) -> str:
        """A subject (or pattern) declared in the default namespace's terms, as message
        classes, subscriptions and taps are, in this namespace's; any other as it is."""
        if self.is_default or not subject.startswith(self._rebase):
            return subject
        return self.prefix + subject[len(DEFAULT_PREFIX):]

    def reply_subject(self, service: str) -> str:
        """Where ``service`` receives the answers to the commands it sends."""
        return f"{self.replies}.{service}"

    def is_reply_subject(self, subject: str) -> bool:
        """Where an answer may go: one of this system's reply subjects, nowhere else."""
        return (subject.startswith(self._replies_dot) and subject.count(".") == 2
                and subject_is_valid(subject))

    def dead_letter_subject(self, service: str, source: str) -> str:
        """Where ``service`` stores what ``source`` (a queue, its outbox) gave up on."""
        return f"{self.dead_letters}.{service}.{source}"

    def stream_for(self, subject: str) -> str:
        """The stream of this namespace that holds ``subject``, or ValueError."""
        for start, stream in self._kinds:
            if subject.startswith(start):
                return stream
        raise ValueError(f"no stream of namespace {self.prefix} holds subject "
                         f"{subject[:120]!r}")

    def inbox_prefix(self, identity: str) -> str:
        """The inbox a service's connection receives its answers on: its own, so no other
        service (of this system or another on the same server) may subscribe to them."""
        if self.is_default:
            return f"_INBOX_{identity}"
        return f"_INBOX_{self.prefix}~{identity}"

    def connection_name(self, who: str | None = None) -> str:
        """How a connection of this system names itself to the server (its monitoring)."""
        return f"{self.prefix}-{who}" if who else self.prefix

    def cloudevent_type(self, source: str, type_: str, version: int) -> str:
        """A message's CloudEvents ``type``: ``<prefix>.<source>.<type>.v<version>``."""
        return f"{self.prefix}.{source}.{type_}.v{version}"


def subject_is_valid(subject: str) -> bool:
    """A concrete NATS subject: dot-separated tokens, no wildcards, no spaces or controls."""
    return (0 < len(subject) <= MAX_SUBJECT_LENGTH and subject.isascii()
            and _SUBJECT.fullmatch(subject) is not None)


DEFAULT = Namespace()


@functools.lru_cache(maxsize=64)
def _named(prefix: str) -> Namespace:
    return DEFAULT if prefix == DEFAULT_PREFIX else Namespace(prefix)


def of_subject(subject: str) -> Namespace:
    """The namespace a kernel subject belongs to (its first token), or ValueError."""
    return _named(subject.partition(".")[0])


def stream_of(subject: str) -> str:
    """The stream holding a kernel subject of any namespace (``acme.events.x`` is in
    ``ACME_EVENTS``), or ValueError."""
    return of_subject(subject).stream_for(subject)
