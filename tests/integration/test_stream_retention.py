"""Every stream keeps messages for a while and up to a size, set by PIZZA_<STREAM>_MAX_*:
made so, and applied to a stream that already exists when the setting changes."""

from __future__ import annotations

import pytest

from pizza.eventing.transport.base import STREAMS, Outgoing, retention
from pizza.eventing.transport.embedded import EmbeddedNats
from pizza.eventing.transport.nats import NatsTransport

DAY = 86400.0


async def started(server: EmbeddedNats) -> NatsTransport:
    transport = NatsTransport(server.url)
    await transport.start()
    return transport


async def test_each_stream_is_made_with_the_retention_that_suits_it(
        nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch) -> None:
    for stream in STREAMS:
        monkeypatch.delenv(f"{stream}_MAX_AGE", raising=False)
        monkeypatch.delenv(f"{stream}_MAX_BYTES", raising=False)
    transport = await started(nats_server)
    try:
        kept = {name: (await transport.js.stream_info(name)).config for name in STREAMS}
    finally:
        await transport.close()
    ages = {name: config.max_age for name, config in kept.items()}
    assert ages == {"PIZZA_EVENTS": 90 * DAY, "PIZZA_COMMANDS": 3 * DAY,
                    "PIZZA_REPLIES": 3 * DAY, "PIZZA_DEADLETTERS": 30 * DAY}
    assert kept["PIZZA_EVENTS"].max_bytes == 4 << 30
    assert all(config.max_bytes == 512 << 20 for name, config in kept.items()
               if name != "PIZZA_EVENTS")


async def test_a_changed_setting_is_applied_to_the_existing_stream_keeping_its_messages(
        nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch) -> None:
    transport = await started(nats_server)
    subject = "pizza.commands.notifications.SendEmail.v1"
    await transport.publish([Outgoing("m-1", subject, b"{}")])
    await transport.close()

    monkeypatch.setenv("PIZZA_COMMANDS_MAX_AGE", "12h")
    monkeypatch.setenv("PIZZA_COMMANDS_MAX_BYTES", "64M")
    transport = await started(nats_server)
    try:
        info = await transport.js.stream_info("PIZZA_COMMANDS")
    finally:
        await transport.close()
    assert info.config.max_age == 12 * 3600
    assert info.config.max_bytes == 64 << 20
    assert info.state.messages == 1  # an update, not a new stream


async def test_a_byte_limit_the_server_cannot_reserve_leaves_the_age_limit(
        nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_DEADLETTERS_MAX_BYTES", "100T")  # more than this disk has
    monkeypatch.setenv("PIZZA_DEADLETTERS_MAX_AGE", "7d")
    transport = await started(nats_server)
    try:
        config = (await transport.js.stream_info("PIZZA_DEADLETTERS")).config
    finally:
        await transport.close()
    assert config.max_age == 7 * DAY
    assert config.max_bytes in (None, -1)


def test_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIZZA_EVENTS_MAX_AGE", "0")
    monkeypatch.setenv("PIZZA_EVENTS_MAX_BYTES", "0")
    assert (retention("PIZZA_EVENTS").max_age, retention("PIZZA_EVENTS").max_bytes) == (0, -1)
    monkeypatch.setenv("PIZZA_EVENTS_MAX_AGE", "30s")  # shorter than the duplicate window
    with pytest.raises(ValueError, match="PIZZA_EVENTS_MAX_AGE"):
        retention("PIZZA_EVENTS")
    monkeypatch.setenv("PIZZA_EVENTS_MAX_AGE", "a while")
    with pytest.raises(ValueError, match="not a duration"):
        retention("PIZZA_EVENTS")
