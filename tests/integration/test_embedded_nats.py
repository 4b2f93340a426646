"""The embedded broker: JetStream state survives a restart, and a kill leaves no process."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import nats
import pytest

from pizza.eventing.transport.embedded import EmbeddedNats


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_stream_survives_restart_on_same_port(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    async with server:
        port = server.port
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(name="SURVIVE", subjects=["survive.>"])
        ack = await js.publish("survive.one", b"hello", headers={"Nats-Msg-Id": "m-1"})
        assert ack.seq == 1
        await nc.close()

    assert not server.running
    await server.start()
    try:
        assert server.port == port
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        info = await js.stream_info("SURVIVE")
        assert info.state.messages == 1
        msg = await js.get_msg("SURVIVE", 1)
        assert msg.data == b"hello"
        await nc.close()
    finally:
        await server.stop()


async def test_kill_leaves_no_process(nats_server: EmbeddedNats) -> None:
    proc = nats_server._proc
    assert proc is not None and nats_server.running
    pid = proc.pid
    await nats_server.kill()
    assert not nats_server.running
    assert not _alive(pid)
    with pytest.raises(OSError):
        await asyncio.open_connection(nats_server.host, nats_server.port)
    await nats_server.kill()  # idempotent
    await nats_server.stop()


async def test_missing_store_dir_is_created_and_url(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "a" / "b", port=None)
    assert server.url == f"nats://127.0.0.1:{server.port}"
    await server.stop()  # stopping a never-started server is a no-op
    async with server:
        assert server.running
        assert (tmp_path / "a" / "b" / "nats-server.log").exists()
    assert not server.running


async def test_port_taken_by_another_server_fails_with_log(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    other = EmbeddedNats(tmp_path / "other", port=nats_server.port)
    with pytest.raises(RuntimeError, match="address already in use"):
        await other.start()
    assert not other.running
    assert nats_server.running
