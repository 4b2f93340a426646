"""Personal data on the bus: marked in the contracts, sealed per person, erased by
forgetting a key (crypto-shredding).

A message's data may hold personal fields, marked in its declaration::

    class SendEmailV1(Command):
        to: Annotated[EmailAddress, Personal]

Streams are append-only and replicated: a message cannot be taken back once published.
So a personal field never goes out in the clear. Each person (the *data subject*, e.g. a
customer) has a key of their own (AES-256-GCM) in the broker's key-value bucket
``KEYS_BUCKET`` (its namespace's, ``Namespace.keys_bucket``), which every process
reaches in ``pizza up`` and in distributed mode alike. A field is sealed with it and
stays a string (``sealed:v1:<ref>:<base64>``), so the envelope keeps its shape;
``<ref>`` names the key, not the person (a hash of their id). Forgetting the person is
purging their key: every copy of their sealed fields, on every stream, in every dead
letter and backup, becomes unreadable at once.

Who does what:

* The producer names whose data a message carries (``Context.send(..., personal_data_of=
  customer_id)``). The message is written to the outbox in the clear, in the producer's
  own database (which holds the data anyway), with that reference: taking an order never
  needs the key store or the broker.
* The relay seals the fields just before it publishes (``seal_outgoing``), creating the
  key on first use. A message that erases a person's data (``Context.publish(...,
  erases=customer_id)``) purges the key when the relay reaches it, in outbox order: what
  was written before it is sealed with the old key, what comes after with a new one.
* The consumer opens the fields before the message is validated (``open_data``). If the
  key is gone, the handler is not called with the message: the subscription's
  ``forgotten`` hook answers instead (notifications: EmailFailed "recipient forgotten"),
  or the message is acknowledged and skipped. No retry, no dead letter.

Messages published before this existed carry their fields in the clear and stay readable:
only values that start with ``sealed:v1:`` are opened.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import binascii
import contextlib
import hashlib
import os
import time
import weakref
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any, get_args, get_origin

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from pizza.eventing.envelope import MalformedMessage
from pizza.eventing.namespace import DEFAULT
from pizza.eventing.transport.base import BrokerUnavailable, Outgoing, Transport

# The key-value bucket holding one key per data subject (the only place keys live), in
# the default namespace; a transport's namespace names its own.
KEYS_BUCKET = DEFAULT.keys_bucket
SEALED = "sealed:v1:"
# An outbox payload that still has fields to seal, or that erases a key, starts with one of
# these, then the subject's reference and a NUL, then the envelope. Never on the wire.
_TO_SEAL = b"\x00pizza-seal\x00"
_TO_ERASE = b"\x00pizza-erase\x00"
_NONCE = 12
_KEY_BYTES = 32
# The relay reuses a key it made or read for this long (its own erasures drop it at once).
KEY_CACHE_SECONDS = 5.0


class _Personal:
    """The marker of a personal field (``Annotated[str, Personal]``); the JSON Schema says
    ``"x-personal": true``."""

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["x-personal"] = True
        return json_schema

    def __repr__(self) -> str:
        return "Personal"


Personal = _Personal()


class Forgotten(Exception):
    """The key that sealed this data was erased: the person was forgotten."""


class KeyStoreUnavailable(BrokerUnavailable):
    """The key store cannot be reached now (the broker is away): try again later."""


def subject_ref(subject: str) -> str:
    """The name of a data subject's key: a hash of their id (a valid KV key)."""
    return "p" + hashlib.sha256(subject.encode()).hexdigest()[:40]


# -- which fields are personal ------------------------------------------------------------

Path = tuple[str, ...]  # aliases from the top of data; "*" for every item of a list


@cache
def personal_fields(model: type[BaseModel]) -> tuple[Path, ...]:
    """The paths of ``model``'s personal fields, nested models and lists included."""
    found: list[Path] = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        if any(isinstance(m, _Personal) for m in field.metadata):
            found.append((key,))
            continue
        for inner, prefix in _nested(field.annotation):
            found.extend((key, *prefix, *path) for path in personal_fields(inner))
    return tuple(found)


def _nested(annotation: Any) -> Iterator[tuple[type[BaseModel], Path]]:
    """Models inside a field's type: itself, list items, optional ones."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, ()
        return
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (list, tuple, set, frozenset):
        for arg in args:
            for model, prefix in _nested(arg):
                yield model, ("*", *prefix)
    elif args:  # a union, Annotated
        for arg in args:
            yield from _nested(arg)


def _places(data: Any, path: Path) -> Iterator[tuple[dict[str, Any], str, str]]:
    """(container, key, dotted path) of every string value at ``path`` in ``data``."""
    head, rest = path[0], path[1:]
    if not isinstance(data, dict) or head not in data:
        return
    if not rest:
        if isinstance(data[head], str):
            yield data, head, head
        return
    value = data[head]
    items = value if rest[0] == "*" and isinstance(value, list) else [value]
    rest = rest[1:] if rest[0] == "*" else rest
    for item in items:
        for container, key, dotted in _places(item, rest):
            yield container, key, f"{head}.{dotted}"


# -- sealing and opening one value ----------------------------------------------------------


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=_KEY_BYTES * 8)


def _aad(message_id: str, dotted: str) -> bytes:
    """What a sealed value is bound to: its message and field (it cannot be moved)."""
    return f"{message_id}/{dotted}".encode()


def seal_value(key: bytes, ref: str, value: str, aad: bytes) -> str:
    nonce = os.urandom(_NONCE)
    blob = nonce + AESGCM(key).encrypt(nonce, value.encode(), aad)
    return f"{SEALED}{ref}:{base64.urlsafe_b64encode(blob).decode()}"


def sealed_ref(value: str) -> str | None:
    """The key reference of a sealed value, or None if the value is in the clear."""
    if not value.startswith(SEALED):
        return None
    ref, colon, _blob = value[len(SEALED):].partition(":")
    if not colon or not ref or len(ref) > 64:
        raise MalformedMessage("a sealed field is not sealed:v1:<ref>:<base64>")
    return ref


def open_value(key: bytes | None, value: str, aad: bytes) -> str:
    """The clear text of a sealed value; Forgotten if its key is gone (or was replaced)."""
    if key is None:
        raise Forgotten("the key of this personal data was erased")
    blob_text = value[len(SEALED):].partition(":")[2]
    try:
        blob = base64.urlsafe_b64decode(blob_text)
    except (binascii.Error, ValueError):
        raise MalformedMessage("a sealed field is not valid base64") from None
    if len(blob) < _NONCE + 16:
        raise MalformedMessage("a sealed field is too short")
    try:
        clear = AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], aad)
    except InvalidTag:
        # Sealed with a key that was erased, then made anew for the same person.
        raise Forgotten("the key of this personal data was erased") from None
    return clear.decode()


# -- whole messages -------------------------------------------------------------------------


def refs_in(data: dict[str, Any], paths: Iterable[Path]) -> set[str]:
    """The key references of the sealed values at ``paths``."""
    refs: set[str] = set()
    for path in paths:
        for container, key, _dotted in _places(data, path):
            ref = sealed_ref(container[key])
            if ref is not None:
                refs.add(ref)
    return refs


def open_data(data: dict[str, Any], paths: Iterable[Path], message_id: str,
              keys: dict[str, bytes | None]) -> str | None:
    """Open the sealed values at ``paths`` in place; the data subject's reference (None
    if nothing was sealed). Forgotten if a key is gone; MalformedMessage if a value is
    not what it claims."""
    subject: str | None = None
    for path in paths:
        for container, key, dotted in _places(data, path):
            value = container[key]
            ref = sealed_ref(value)
            if ref is None:
                continue
            container[key] = open_value(keys.get(ref), value, _aad(message_id, dotted))
            subject = ref
    return subject


def seal_data(data: dict[str, Any], paths: Iterable[Path], message_id: str, ref: str,
              key: bytes) -> None:
    """Seal the values at ``paths`` in place (values already sealed are left alone)."""
    for path in paths:
        for container, name, dotted in _places(data, path):
            value = container[name]
            if not value.startswith(SEALED):
                container[name] = seal_value(key, ref, value, _aad(message_id, dotted))


# -- the outbox's side ----------------------------------------------------------------------


def to_seal(payload: bytes, subject: str) -> bytes:
    """An outbox payload whose personal fields the relay seals with ``subject``'s key."""
    return _TO_SEAL + subject_ref(subject).encode() + b"\x00" + payload


def to_erase(payload: bytes, subject: str) -> bytes:
    """An outbox payload that purges ``subject``'s key just before it is published."""
    return _TO_ERASE + subject_ref(subject).encode() + b"\x00" + payload


def _pending(payload: bytes) -> tuple[bytes, str, bytes] | None:
    """(marker, reference, envelope) of a payload the relay must work on, else None."""
    if not payload.startswith(b"\x00"):
        return None
    for marker in (_TO_SEAL, _TO_ERASE):
        if payload.startswith(marker):
            ref, _nul, envelope = payload[len(marker):].partition(b"\x00")
            return marker, ref.decode(), envelope
    return None


def needs_work(messages: Iterable[Outgoing]) -> bool:
    return any(m.payload.startswith(b"\x00") for m in messages)


async def seal_outgoing(messages: list[Outgoing], keys: KeyStore) -> None:
    """Make outbox messages ready for the wire, in order: seal personal fields (creating
    keys as needed), and purge the key of an erasing message before it goes. In place.

    KeyStoreUnavailable if the key store cannot be reached: nothing is published then,
    and the relay tries the same rows again later.
    """
    from pizza.eventing.catalog import registry

    work = [(m, _pending(m.payload)) for m in messages]
    erased_here = {found[1] for _m, found in work if found and found[0] == _TO_ERASE}
    wanted = {found[1] for _m, found in work
              if found and found[0] == _TO_SEAL and found[1] not in erased_here}
    ready = dict(zip(wanted, await asyncio.gather(*(keys.get_or_create(r) for r in wanted)),
                     strict=True))
    for message, found in work:
        if found is None:
            continue
        marker, ref, envelope = found
        if marker == _TO_ERASE:
            await keys.erase(ref)
            ready.pop(ref, None)
            message.payload = envelope
            continue
        doc = orjson.loads(envelope)
        meta = doc["metadata"]
        cls = registry.get(meta["type"], meta["version"])
        if cls is not None:
            key = ready.get(ref)
            if key is None:
                key = ready[ref] = await keys.get_or_create(ref)
            seal_data(doc["data"], personal_fields(cls), meta["id"], ref, key)
        message.payload = orjson.dumps(doc)


async def opened(doc: dict[str, Any], keys: KeyStore) -> dict[str, Any]:
    """An envelope (as JSON) with its sealed fields opened where their keys remain, for
    tools and tests; a value whose key was erased stays sealed."""
    from pizza.eventing.catalog import registry

    meta, data = doc.get("metadata") or {}, doc.get("data")
    cls = registry.get(str(meta.get("type")), meta.get("version"))  # type: ignore[arg-type]
    if cls is None or not isinstance(data, dict):
        return doc
    paths = personal_fields(cls)
    found = await keys.get_many(refs_in(data, paths))
    data = orjson.loads(orjson.dumps(data))
    for path in paths:
        for container, key, dotted in _places(data, path):
            value = container[key]
            ref = sealed_ref(value)
            if ref is not None:
                with contextlib.suppress(Forgotten):
                    container[key] = open_value(found.get(ref), value,
                                                _aad(str(meta.get("id")), dotted))
    return {**doc, "data": data}


def clear_payload(payload: bytes) -> bytes:
    """The envelope of an outbox payload, without the relay's instructions."""
    found = _pending(payload)
    return found[2] if found else payload


# -- the key store --------------------------------------------------------------------------


class KeyStore(abc.ABC):
    """One key per data subject, shared by every process on the bus."""

    @abc.abstractmethod
    async def get(self, ref: str) -> bytes | None:
        """The key, or None if there is none (never made, or erased)."""

    @abc.abstractmethod
    async def get_or_create(self, ref: str) -> bytes: ...

    @abc.abstractmethod
    async def erase(self, ref: str) -> None:
        """Purge the key and every revision of it: what it sealed is unreadable."""

    async def get_many(self, refs: Iterable[str]) -> dict[str, bytes | None]:
        wanted = sorted(set(refs))
        found = await asyncio.gather(*(self.get(ref) for ref in wanted))
        return dict(zip(wanted, found, strict=True))


class _Cached(KeyStore):
    """A store that remembers keys it made or read for KEY_CACHE_SECONDS (the relay's)."""

    def __init__(self, inner: KeyStore) -> None:
        self.inner = inner
        self._keys: dict[str, tuple[float, bytes]] = {}

    async def get(self, ref: str) -> bytes | None:
        return await self.inner.get(ref)

    async def get_or_create(self, ref: str) -> bytes:
        hit = self._keys.get(ref)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        key = await self.inner.get_or_create(ref)
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[ref] = (time.monotonic() + KEY_CACHE_SECONDS, key)
        return key

    async def erase(self, ref: str) -> None:
        self._keys.pop(ref, None)
        await self.inner.erase(ref)


class NatsKeyStore(KeyStore):
    """Keys in a JetStream key-value bucket (history 1: a purge leaves no old revision)."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.bucket = transport.namespace.keys_bucket
        self._kv: Any = None

    async def _bucket(self) -> Any:
        from nats.js.api import KeyValueConfig, StorageType
        from nats.js.errors import BucketNotFoundError, NotFoundError

        if self._kv is None:
            js = self.transport.js
            try:
                self._kv = await js.key_value(self.bucket)
            except (NotFoundError, BucketNotFoundError):
                self._kv = await js.create_key_value(KeyValueConfig(
                    bucket=self.bucket, history=1, storage=StorageType.FILE,
                    replicas=self.transport.bucket_replicas(),  # a cluster's: outlives a server
                    description="one key per data subject; purging one forgets them"))
        return self._kv

    @contextlib.asynccontextmanager
    async def _reaching(self) -> Any:
        try:
            yield await self._bucket()
        except (Forgotten, MalformedMessage):
            raise
        except Exception as error:
            self._kv = None
            raise KeyStoreUnavailable(f"key store {self.bucket}: {type(error).__name__}: "
                                      f"{str(error)[:200]}") from error

    async def get(self, ref: str) -> bytes | None:
        from nats.js.errors import KeyNotFoundError

        async with self._reaching() as kv:
            try:
                entry = await kv.get(ref)
            except KeyNotFoundError:  # KeyDeletedError too: a purged key
                return None
            return bytes(entry.value) if entry.value else None

    async def get_or_create(self, ref: str) -> bytes:
        from nats.js.errors import KeyWrongLastSequenceError

        async with self._reaching() as kv:
            found = await self.get(ref)
            if found is not None:
                return found
            key = new_key()
            try:
                await kv.create(ref, key)
            except KeyWrongLastSequenceError:  # another process made it first: theirs
                theirs = await self.get(ref)
                if theirs is None:
                    raise
                return theirs
            return key

    async def erase(self, ref: str) -> None:
        async with self._reaching() as kv:
            await kv.purge(ref)


class TransportKeyStore(KeyStore):
    """Keys through the Transport's generic key-value methods (the memory transport)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.bucket = transport.namespace.keys_bucket
        self._lock = asyncio.Lock()

    async def get(self, ref: str) -> bytes | None:
        if not self.transport.connected:
            raise KeyStoreUnavailable("the broker is away")
        return (await self.transport.kv_entries(self.bucket)).get(ref)

    async def get_or_create(self, ref: str) -> bytes:
        async with self._lock:
            found = await self.get(ref)
            if found is None:
                found = new_key()
                await self.transport.kv_put(self.bucket, ref, found)
            return found

    async def erase(self, ref: str) -> None:
        if not self.transport.connected:
            raise KeyStoreUnavailable("the broker is away")
        await self.transport.kv_delete(self.bucket, ref)


_stores: weakref.WeakKeyDictionary[Transport, KeyStore] = weakref.WeakKeyDictionary()
_sealing: weakref.WeakKeyDictionary[Transport, KeyStore] = weakref.WeakKeyDictionary()


def key_store(transport: Transport) -> KeyStore:
    """The key store on this transport's broker (one per transport)."""
    found = _stores.get(transport)
    if found is None:
        from pizza.eventing.transport.nats import NatsTransport

        if isinstance(transport, NatsTransport):
            found = NatsKeyStore(transport)
        else:
            found = TransportKeyStore(transport)
        _stores[transport] = found
    return found


def sealing_store(transport: Transport) -> KeyStore:
    """The key store as the relay uses it: keys it made or read are kept a few seconds."""
    found = _sealing.get(transport)
    if found is None:
        found = _sealing[transport] = _Cached(key_store(transport))
    return found
