"""The NATS settings of a deployment: a cluster's servers, replicas, the duplicate window
and the embedded broker's sync, each checked when read (a wrong one fails at start)."""

from __future__ import annotations

import pytest

from pizza.eventing.settings import nats_servers, nats_sync
from pizza.eventing.transport.base import duplicate_window, replicas, retention


def test_a_cluster_url_lists_every_server() -> None:
    assert nats_servers("nats://a:4222") == ["nats://a:4222"]
    assert nats_servers(" nats://a:4222, nats://b:4222 ,nats://c:4222,") == [
        "nats://a:4222", "nats://b:4222", "nats://c:4222"]
    with pytest.raises(ValueError, match="no NATS server"):
        nats_servers(" , ")


def test_replicas_default_to_one_and_stay_in_jetstreams_range(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIZZA_NATS_REPLICAS", raising=False)
    assert replicas() == 1 and retention("PIZZA_EVENTS").replicas == 1
    monkeypatch.setenv("PIZZA_NATS_REPLICAS", "3")
    assert retention("PIZZA_EVENTS").replicas == 3
    assert retention("PIZZA_EVENTS", 1).replicas == 1  # the embedded broker: one copy
    for wrong in ("0", "6", "three"):
        monkeypatch.setenv("PIZZA_NATS_REPLICAS", wrong)
        with pytest.raises(ValueError, match="PIZZA_NATS_REPLICAS"):
            replicas()


def test_the_duplicate_window_may_grow_never_shrink(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIZZA_NATS_DUPLICATE_WINDOW", raising=False)
    assert duplicate_window() == 120
    monkeypatch.setenv("PIZZA_NATS_DUPLICATE_WINDOW", "10m")
    assert retention("PIZZA_COMMANDS").duplicate_window == 600
    monkeypatch.setenv("PIZZA_COMMANDS_MAX_AGE", "5m")  # shorter than the window
    with pytest.raises(ValueError, match="PIZZA_COMMANDS_MAX_AGE"):
        retention("PIZZA_COMMANDS")
    monkeypatch.setenv("PIZZA_NATS_DUPLICATE_WINDOW", "60")  # the outbox counts on 120 s
    with pytest.raises(ValueError, match="at least 120"):
        duplicate_window()


def test_sync_is_always_or_the_servers_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIZZA_NATS_SYNC", raising=False)
    assert nats_sync() is None
    monkeypatch.setenv("PIZZA_NATS_SYNC", "always")
    assert nats_sync() == "always"
    monkeypatch.setenv("PIZZA_NATS_SYNC", "sometimes")
    with pytest.raises(ValueError, match="PIZZA_NATS_SYNC"):
        nats_sync()
