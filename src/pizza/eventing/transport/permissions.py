"""What each service may do on the bus, derived from what it declares, for nats-server.

A service declares its subscriptions, the events it publishes, the commands it sends and
whether it answers commands (``eventing.service.Service``). From that alone this module
renders the nats-server ``authorization`` block: one nkey user per service, allowed to

* publish its own events (``pizza.events.<itself>.>``), the command subjects it sends,
  answers on reply subjects (``pizza.replies.*``, only if it handles a command) and its
  own dead letters (``pizza.deadletters.<itself>.>``), all in its system's namespace
  (``namespace.py``: ``pizza`` by default), and nothing of another system's;
* use the JetStream API only for what the kernel does: look at, create and update the
  streams (it creates and heals them; never delete or purge), create, look at, pull from,
  acknowledge and (for a replay) delete ITS OWN durable consumers, named
  ``<service>-<queue>``, plus the one short-lived consumer its outbox uses to look at the
  stream after a long stop (``<service>-outbox-lookup``); write its own key of the usage
  bucket and read the others; read the keys of personal data, and make and purge them
  only if it produces personal data;
* receive only on its own inbox (``_INBOX_<service>.>``; another namespace's
  ``_INBOX_<namespace>~<service>.>``), so it never sees the answers meant for another
  service.

The broker then refuses the rest itself (a permissions violation), whatever the code does.
The ``operator`` user (the tools) may do everything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pizza.eventing.namespace import DEFAULT, Namespace
from pizza.eventing.personal import personal_fields
from pizza.eventing.service import Service, queue_name
from pizza.eventing.transport import credentials

API = "$JS.API"


def lookup_consumer(identity: str) -> str:
    """The name of the short-lived consumer with which ``identity``'s outbox looks at what
    a stream already holds (a fixed name, so the broker can allow exactly it)."""
    return f"{identity}-outbox-lookup"


@dataclass(frozen=True, slots=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


OPERATOR = Permissions(publish=(">",), subscribe=(">",))


def answers_commands(service: Service) -> bool:
    """Whether it handles a command (and so may answer on the command's replyTo)."""
    return any(sub.subject.startswith(f"{DEFAULT.commands}.")  # declared in default terms
               for sub in service.subscriptions.values())


def publishes_to(service: Service, namespace: Namespace = DEFAULT) -> list[str]:
    """The message subjects (patterns) the service may publish to."""
    subjects = [f"{namespace.events}.{service.name}.>"]
    subjects += sorted({namespace.subject(cls.info) for cls in service.sends})
    if answers_commands(service):
        subjects.append(f"{namespace.replies}.*")
    subjects.append(f"{namespace.dead_letters}.{service.name}.>")
    return subjects


def queues(service: Service, namespace: Namespace = DEFAULT) -> list[tuple[str, str]]:
    """(stream, durable consumer name) of every queue of the service."""
    declared = [(sub.subject, sub.name) for sub in service.subscriptions.values()]
    declared += [(subject, name) for name, subject in service.taps.items()]
    return sorted((namespace.stream_for(namespace.local(subject)),
                   queue_name(service.name, name)) for subject, name in declared)


def _consumer_api(stream: str, name: str) -> list[str]:
    return [
        f"{API}.CONSUMER.INFO.{stream}.{name}",
        f"{API}.CONSUMER.CREATE.{stream}.{name}",
        f"{API}.CONSUMER.CREATE.{stream}.{name}.>",  # the form with a filter subject
        f"{API}.CONSUMER.DURABLE.CREATE.{stream}.{name}",
        f"{API}.CONSUMER.MSG.NEXT.{stream}.{name}",
        f"{API}.CONSUMER.DELETE.{stream}.{name}",
        f"$JS.ACK.{stream}.{name}.>",  # ack, nak, term, in progress
    ]


def for_service(service: Service, namespace: Namespace = DEFAULT) -> Permissions:
    own = publishes_to(service, namespace)
    publish = list(own)
    for stream in namespace.streams:
        publish += [f"{API}.STREAM.INFO.{stream}", f"{API}.STREAM.CREATE.{stream}",
                    f"{API}.STREAM.UPDATE.{stream}"]
    publish.append(f"{API}.STREAM.NAMES")  # which stream holds a subject (a refusal)
    for stream, name in queues(service, namespace):
        publish += _consumer_api(stream, name)
    lookups = {namespace.stream_for(_concrete(subject)) for subject in own
               if not subject.startswith(namespace.dead_letters)}
    for stream in sorted(lookups):
        publish += _consumer_api(stream, lookup_consumer(service.name))
    # The usage registry: its own key; everyone's to read.
    usage = namespace.usage_bucket
    publish += [f"$KV.{usage}.{service.name}", *_bucket_api(usage)]
    # The key store of personal data (personal.py): every service opens sealed fields;
    # only one that produces personal fields makes (and, forgetting, purges) keys.
    keys = namespace.keys_bucket
    publish += _bucket_api(keys)
    if seals_personal_data(service):
        publish.append(f"$KV.{keys}.>")
    return Permissions(publish=tuple(dict.fromkeys(publish)),
                       subscribe=(f"{namespace.inbox_prefix(service.name)}.>",))


def _bucket_api(bucket: str) -> list[str]:
    """Open (and, the first to come, create) a key-value bucket, and read its keys."""
    stream = f"KV_{bucket}"
    return [f"{API}.STREAM.INFO.{stream}", f"{API}.STREAM.CREATE.{stream}",
            f"{API}.DIRECT.GET.{stream}", f"{API}.DIRECT.GET.{stream}.>",
            f"{API}.STREAM.MSG.GET.{stream}"]


def seals_personal_data(service: Service) -> bool:
    """Whether a message it publishes or sends has personal fields (sealed with a key)."""
    return any(personal_fields(cls) for cls in (*service.publishes, *service.sends))


def _concrete(pattern: str) -> str:
    """A subject the pattern matches (to find its stream)."""
    return pattern.replace(">", "x").replace("*", "x")


def authorization(users: Sequence[tuple[str, Permissions]]) -> str:
    """The nats-server ``authorization`` block: one user per (public nkey, permissions)."""
    lines = ["authorization {", "  users = ["]
    for nkey, permissions in users:
        lines.append("    {")
        lines.append(f"      nkey: {json.dumps(nkey)}")
        lines.append("      permissions: {")
        lines.append(f"        publish: {{ allow: {_list(permissions.publish)} }}")
        lines.append(f"        subscribe: {{ allow: {_list(permissions.subscribe)} }}")
        lines.append("      }")
        lines.append("    }")
    lines += ["  ]", "}", ""]
    return "\n".join(lines)


def _list(subjects: Iterable[str]) -> str:
    return "[" + ", ".join(json.dumps(s) for s in subjects) + "]"



@dataclass(frozen=True, slots=True)
class BrokerUsers:
    """The authorization block for a set of services, and each user's seed file."""

    config: str
    seeds: dict[str, Path]  # service name (and "operator") -> its seed file


def broker_users(services: Sequence[Service], directory: Path,
                 namespace: Namespace = DEFAULT) -> BrokerUsers:
    """Seeds for every service and the operator in ``directory`` (made once, kept after),
    and the authorization block that lets each do what it declares in ``namespace``."""
    seeds = {service.name: credentials.ensure_seed(directory, service.name)
             for service in services}
    seeds[credentials.OPERATOR] = credentials.ensure_seed(directory, credentials.OPERATOR)
    users = [(credentials.public_key(seeds[service.name]), for_service(service, namespace))
             for service in services]
    users.append((credentials.public_key(seeds[credentials.OPERATOR]), OPERATOR))
    return BrokerUsers(authorization(users), seeds)
