"""One PIZZA_HOME, one system; and the tools say at once when its broker is gone."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from running_pizza import PIZZA, Process, environment, eventually, free_port

# "At once" means what starting the interpreter and the CLI costs on this machine now,
# plus a little: a tool that waited on a network timeout or retried would take far longer
# (a second system's broker start-up, nats-py's connect retries: tens of seconds). The
# allowance follows the machine's load, so a busy CI machine does not fail a tool that
# was fast, and a hang still fails.
SLACK_SECONDS = 4.0


async def at_once(env: dict[str, str]) -> float:
    """The seconds a tool may take and still have answered at once: twice what
    `pizza --help` (interpreter and CLI start-up) takes now, plus SLACK_SECONDS."""
    _, _, _, start_up = await run(["--help"], env)
    return 2 * start_up + SLACK_SECONDS


async def run(args: list[str], env: dict[str, str],
              timeout: float = 60.0) -> tuple[int, str, str, float]:
    """A `pizza ...` command: exit status, stdout, stderr and how long it took."""
    started = time.monotonic()
    tool = await asyncio.create_subprocess_exec(
        PIZZA, *args, env={**env, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(tool.communicate(), timeout)
    except TimeoutError:
        tool.kill()
        await tool.wait()
        raise AssertionError(f"pizza {' '.join(args)} still running after {timeout}s") from None
    assert tool.returncode is not None
    return tool.returncode, out.decode(), err.decode(), time.monotonic() - started


def servers_started(home: Path) -> int:
    """How many nats-server processes ever opened this home's JetStream store."""
    log = home / "nats" / "nats-server.log"
    return log.read_text(errors="replace").count("Starting nats-server")


async def answers(url: str) -> bool:
    async with httpx.AsyncClient(timeout=2) as client:
        try:
            return (await client.get(f"{url}/api/health")).status_code == 200
        except httpx.HTTPError:
            return False


async def broker_gone(url: str) -> bool:
    host, port = url.removeprefix("nats://").split(":")
    try:
        _, writer = await asyncio.open_connection(host, int(port))
    except OSError:
        return True
    writer.close()
    return False


async def test_a_second_pizza_up_on_the_same_home_refuses_before_touching_the_broker(
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = environment(home)
    port = free_port()
    first = Process(["up", "--port", str(port)], env, tmp_path / "first.log",
                    f"http://127.0.0.1:{port}")
    first.start()
    try:
        await first.wait_healthy()
        url_file = home / "nats" / "url"
        recorded, recorded_at = url_file.read_text(), url_file.stat().st_mtime_ns
        assert servers_started(home) == 1

        allowed = await at_once(env)
        code, out, err, seconds = await run(["up", "--port", str(free_port())], env)

        assert code == 1, out + err
        assert seconds < allowed, f"refused only after {seconds:.1f}s (allowed {allowed:.1f}s)"
        assert first.proc is not None
        assert err.strip() == (f"pizza up: PIZZA_HOME {home} is in use by pizza up "
                               f"(pid {first.proc.pid}); stop it or use another "
                               "PIZZA_HOME"), err
        assert "Traceback" not in out + err
        assert servers_started(home) == 1, "a second nats-server opened the live store"
        assert url_file.read_text() == recorded
        assert url_file.stat().st_mtime_ns == recorded_at
        assert await answers(first.url), "the first system stopped answering"

        # A `pizza serve` wanting the embedded broker is refused the same way.
        code, _, err, _ = await run(["serve", "kitchen", "--port", str(free_port())], env)
        assert code == 1 and "is in use by pizza up" in err, err
        assert servers_started(home) == 1

        # A crash (kill -9) releases the home and takes its broker along: a restart works.
        first.proc.kill()
        first.proc.wait()
        await eventually(lambda: broker_gone(recorded), timeout=10)
        again = Process(["up", "--port", str(port)], env, tmp_path / "again.log",
                        first.url)
        again.start()
        try:
            await again.wait_healthy()
            assert servers_started(home) == 2
            assert url_file.read_text() != recorded
        finally:
            again.stop()
    finally:
        first.stop()


async def test_the_tools_fail_fast_in_one_line_when_the_recorded_broker_is_gone(
        tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "nats").mkdir(parents=True)
    dead = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    (home / "nats" / "url").write_text(dead)
    env = environment(home)
    expected = (f"no broker answers at {dead}: is `pizza up` running with this "
                "PIZZA_HOME?")
    for args in (["deadletters", "list"], ["deadletters", "retry"],
                 ["deadletters", "show", "1"], ["deadletters", "drop", "1"],
                 ["events", "usage"], ["events", "forget", "kitchen"]):
        allowed = await at_once(env)
        code, out, err, seconds = await run(args, env, timeout=30)
        assert code == 1, (args, out, err)
        assert err.strip() == expected, (args, err)
        assert seconds < allowed, f"pizza {' '.join(args)} took {seconds:.1f}s ({allowed:.1f}s)"

    site = f"http://127.0.0.1:{free_port()}"
    for args in (["order", "--url", site], ["simulate", "--url", site, "--orders", "1"],
                 ["replay", "tracking", "--url", site]):
        allowed = await at_once(env)
        code, out, err, seconds = await run(args, env, timeout=30)
        assert code == 1, (args, out, err)
        assert err.strip().startswith(f"nothing answers at {site}: is `pizza up"), (args, err)
        assert "Traceback" not in out + err
        assert seconds < allowed, f"pizza {' '.join(args)} took {seconds:.1f}s ({allowed:.1f}s)"
