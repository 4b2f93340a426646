"""The AsyncAPI 3.0.0 document of every channel, message and operation, from the declarations.

* A channel per subject: each event type and version, each command, and each service's
  reply subject (``pizza.replies.<service>``) with the answers that come back to it; the
  subjects of the system's namespace (``namespace.py``; ``pizza`` by default).
* A message per type and version (``OrderConfirmedV1``): its payload is the envelope,
  ``metadata`` (one shared schema in components) and ``data`` (the message's schema).
  Pydantic's ``$defs`` move to ``components/schemas``, their ``$ref`` rewritten, since a
  ``#/$defs/...`` pointer would resolve against the whole document, not the payload.
* Operations per service: ``send`` what it publishes, sends or answers, ``receive`` what
  its durable queues drain. AsyncAPI 3.0 messages have no ``deprecated`` field, so a
  deprecated version says so in its description and in ``x-deprecated`` / ``x-sunset``.

Generic kernel code: it takes a Registry and the Services, and knows no business.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from pizza.eventing.catalog import Message, Registry
from pizza.eventing.governance import TRACEPARENT, metadata_schema, personal_field_names
from pizza.eventing.namespace import DEFAULT, Namespace
from pizza.eventing.service import Service
from pizza.eventing.settings import nats_servers

SCHEMAS = "#/components/schemas/"
RESERVED = ("Metadata", "NatsHeaders")


def message_id(cls: type[Message]) -> str:
    return f"{cls.info.type}V{cls.info.version}"


def reply_channel(service: str, namespace: Namespace = DEFAULT) -> str:
    return namespace.reply_subject(service)


def _rewrite(node: Any, names: dict[str, str]) -> Any:
    """A copy of a schema with ``#/$defs/X`` pointers moved to components/schemas."""
    if isinstance(node, list):
        return [_rewrite(item, names) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: _rewrite(value, names) for key, value in node.items()}
    ref = result.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        result["$ref"] = SCHEMAS + names[ref.removeprefix("#/$defs/")]
    return result


def _payload_schema(registry: Registry, cls: type[Message],
                    schemas: dict[str, Any]) -> dict[str, Any]:
    """The data schema of ``cls``, its ``$defs`` added to ``schemas`` under unique names."""
    data = copy.deepcopy(registry.schema(cls))
    defs: dict[str, Any] = data.pop("$defs", {})
    names = {name: name for name in defs}
    moved = {name: _rewrite(schema, names) for name, schema in defs.items()}
    if any(name in RESERVED or schemas.get(name, schema) != schema
           for name, schema in moved.items()):
        # The same name means something else elsewhere: this message's get its prefix.
        names = {name: f"{message_id(cls)}.{name}" for name in defs}
        moved = {name: _rewrite(schema, names) for name, schema in defs.items()}
    for name, schema in moved.items():
        schemas[names[name]] = schema
    data = _rewrite(data, names)
    if cls.info.deprecated:
        data["deprecated"] = True
    return data


def _message(registry: Registry, cls: type[Message], schemas: dict[str, Any]) -> dict[str, Any]:
    info = cls.info
    description = info.description
    message: dict[str, Any] = {
        "name": message_id(cls),
        "title": f"{info.type} v{info.version}",
        "summary": info.description or f"{info.type} v{info.version}",
        "contentType": "application/json",
        "correlationId": {"location": "$message.payload#/metadata/correlationId"},
        "headers": {"$ref": SCHEMAS + "NatsHeaders"},
        "payload": {
            "type": "object",
            "required": ["metadata", "data"],
            "properties": {
                "metadata": {"$ref": SCHEMAS + "Metadata"},
                "data": _payload_schema(registry, cls, schemas),
            },
        },
        "tags": [{"name": info.kind}, {"name": info.owner}],
        "x-type": info.type,
        "x-version": info.version,
        "x-kind": info.kind,
    }
    if info.deprecated:
        sunset = info.deprecated.isoformat()
        description = (f"**Deprecated**: sunset on {sunset}; consumers move to a newer "
                       f"version of {info.type}. {description}")
        message["x-deprecated"] = True
        message["x-sunset"] = sunset
    personal = personal_field_names(cls)
    if personal:
        description = (f"**Personal data**: {', '.join(personal)} (`x-personal`), sealed on "
                       f"the wire with the data subject's key as the string "
                       f"`sealed:v1:<key>:<base64>`; the schema is of the opened value. "
                       f"{description}")
        message["x-personal-fields"] = personal
    if description:
        message["description"] = description
    return message


def _ref(channel: str, message: str) -> dict[str, str]:
    return {"$ref": f"#/channels/{channel}/messages/{message}"}


def _replies_to(service: Service, registry: Registry) -> list[type[Message]]:
    """The answers that come back to ``service``: those it handles, those its targets give."""
    subject = reply_channel(service.name)  # as subscriptions declare it: the default's
    handled = {key for sub in service.subscriptions.values() if sub.subject == subject
               for key in sub.handlers}
    targets = {command.info.owner for command in service.sends}
    return [cls for cls in registry if cls.info.kind == "reply"
            and (cls.info.key in handled or cls.info.owner in targets)]


def servers(broker: str) -> dict[str, Any]:
    """AsyncAPI servers for a broker URL setting: one, or each of a cluster's (comma
    separated), named ``nats`` or ``nats-1``, ``nats-2``...; host and port only, never the
    credentials a URL may carry."""
    found: dict[str, Any] = {}
    listed = nats_servers(broker)
    for number, url in enumerate(listed, start=1):
        parts = urlsplit(url if "://" in url else f"nats://{url}")
        host = parts.hostname or "127.0.0.1"
        if ":" in host:  # IPv6
            host = f"[{host}]"
        entry: dict[str, Any] = {"host": f"{host}:{parts.port or 4222}", "protocol": "nats"}
        if parts.scheme == "tls":
            entry["description"] = "TLS"
        found["nats" if len(listed) == 1 else f"nats-{number}"] = entry
    return found


def asyncapi(registry: Registry, services: Sequence[Service], title: str,
             version: str, broker: str | None = None,
             namespace: Namespace = DEFAULT) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``registry``'s messages and ``services``' operations;
    ``broker``: the NATS URL in use (one server or a cluster's), named as its servers;
    ``namespace``: the system whose subjects the channels are."""
    schemas: dict[str, Any] = {
        "Metadata": metadata_schema(),
        "NatsHeaders": {
            "type": "object",
            "properties": {
                "Nats-Msg-Id": {"type": "string", "description":
                                "Equals metadata.id: the broker drops a re-publish."},
                "traceparent": {"type": "string", "pattern": TRACEPARENT,
                                "description": "Repeats metadata.traceparent."},
            },
        },
    }
    messages = {message_id(cls): _message(registry, cls, schemas) for cls in registry}
    channels: dict[str, Any] = {}
    carried: dict[str, list[type[Message]]] = {}  # channel -> its messages

    def channel(address: str, classes: list[type[Message]], description: str) -> None:
        carried[address] = classes
        channels[address] = {
            "address": address,
            "description": description,
            "messages": {message_id(cls): {"$ref": f"#/components/messages/{message_id(cls)}"}
                         for cls in classes},
        }

    for cls in registry:
        if cls.info.kind == "event":
            channel(namespace.subject(cls.info), [cls], f"{cls.info.type} "
                    f"v{cls.info.version} events published by {cls.info.owner}.")
        elif cls.info.kind == "command":
            channel(namespace.subject(cls.info), [cls], f"{cls.info.type} "
                    f"v{cls.info.version} commands to {cls.info.owner}.")
    for service in services:
        answers = _replies_to(service, registry)
        if answers:
            channel(reply_channel(service.name, namespace), answers,
                    f"Answers to the commands {service.name} sends (its replyTo).")

    operations: dict[str, Any] = {}
    for service in services:
        operations.update(_operations(service, registry, carried, namespace))

    return {
        "asyncapi": "3.0.0",
        "info": {"title": title, "version": version,
                 "description": "Every channel, message and operation on the bus. Each "
                 "message is an envelope: the shared metadata and the data of its type "
                 "and version."},
        "defaultContentType": "application/json",
        **({"servers": servers(broker)} if broker else {}),
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def _operations(service: Service, registry: Registry,
                carried: dict[str, list[type[Message]]],
                namespace: Namespace) -> dict[str, Any]:
    """The send and receive operations of one service."""
    name = service.name
    ops: dict[str, Any] = {}
    for cls in service.publishes:
        address = namespace.subject(cls.info)
        if cls.info.kind == "event" and address in carried:
            ops[f"{name}.send.{message_id(cls)}"] = {
                "action": "send", "channel": {"$ref": f"#/channels/{address}"},
                "summary": f"{name} publishes {cls.info.type} v{cls.info.version}.",
                "messages": [_ref(address, message_id(cls))]}
    answers = {cls.info.key for cls in service.publishes if cls.info.kind == "reply"}
    for address, classes in carried.items():
        mine = [cls for cls in classes if cls.info.kind == "reply" and cls.info.key in answers]
        if mine:
            ops[f"{name}.reply.{address.rsplit('.', 1)[-1]}"] = {
                "action": "send", "channel": {"$ref": f"#/channels/{address}"},
                "summary": f"{name} answers on the commands' replyTo.",
                "messages": [_ref(address, message_id(cls)) for cls in mine]}
    for command in service.sends:
        address = namespace.subject(command.info)
        if address not in carried:
            continue
        operation: dict[str, Any] = {
            "action": "send", "channel": {"$ref": f"#/channels/{address}"},
            "summary": f"{name} sends {command.info.type} v{command.info.version} to "
                       f"{command.info.owner}.",
            "messages": [_ref(address, message_id(command))]}
        back = reply_channel(name, namespace)
        answers_back = [cls for cls in carried.get(back, ())
                        if cls.info.owner == command.info.owner]
        if answers_back:
            operation["reply"] = {
                "channel": {"$ref": f"#/channels/{back}"},
                "messages": [_ref(back, message_id(cls)) for cls in answers_back]}
        ops[f"{name}.send.{message_id(command)}"] = operation
    for sub in service.subscriptions.values():
        classes = [cls for cls in (registry.get(*key) for key in sub.messages)
                   if cls is not None]
        subject = namespace.local(sub.subject)
        on = [cls for cls in classes if cls in carried.get(subject, ())]
        if not on:
            continue
        ops[f"{name}.receive.{sub.name}"] = {
            "action": "receive", "channel": {"$ref": f"#/channels/{subject}"},
            "summary": f"{name} drains its durable queue {name}-{sub.name}.",
            "messages": [_ref(subject, message_id(cls)) for cls in on],
            "x-durable": f"{name}-{sub.name}",
            "x-max-in-flight": sub.max_in_flight,
            "x-max-attempts": sub.max_attempts,
        }
    return ops
