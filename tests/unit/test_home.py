"""The PIZZA_HOME lock: one system per home; services on SQLite share it with each other."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pizza import home

HOLD = ("import sys, time\nfrom pizza import home\n"
        "home.claim(sys.argv[1], shared_by=sys.argv[2] or None)\n"
        "print('held', flush=True)\ntime.sleep(120)\n")


@pytest.fixture
def pizza_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PIZZA_HOME", str(tmp_path))
    yield tmp_path
    home.release()


@pytest.fixture
def holders(pizza_home: Path) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def hold(holders: list[subprocess.Popen[str]], command: str,
         shared_by: str = "") -> subprocess.Popen[str]:
    """Another process that claims the home and keeps it."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, command, shared_by],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    holders.append(process)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line == "held\n", process.stderr.read() if process.stderr else line
    return process


def test_a_second_system_is_refused_and_told_who_has_the_home(
        pizza_home: Path, holders: list[subprocess.Popen[str]]) -> None:
    first = hold(holders, "pizza up")
    with pytest.raises(home.HomeInUse) as refused:
        home.claim("pizza up")
    assert str(refused.value) == (f"pizza up: PIZZA_HOME {pizza_home} is in use by pizza "
                                  f"up (pid {first.pid}); stop it or use another PIZZA_HOME")
    with pytest.raises(home.HomeInUse, match="in use by pizza up"):
        home.claim("pizza serve kitchen", shared_by="kitchen")


def test_a_crashed_system_never_blocks_the_next(
        pizza_home: Path, holders: list[subprocess.Popen[str]]) -> None:
    first = hold(holders, "pizza up")
    first.kill()  # kill -9: no clean-up ran, the file and its record stay
    first.wait()
    home.claim("pizza up")
    assert (pizza_home / "pizza.lock").read_text().startswith("pizza up (pid ")


def test_services_on_sqlite_share_a_home_but_not_with_a_copy_or_a_pizza_up(
        pizza_home: Path, holders: list[subprocess.Popen[str]]) -> None:
    kitchen = hold(holders, "pizza serve kitchen", "kitchen")
    hold(holders, "pizza serve orders", "orders")  # another service: fine
    with pytest.raises(home.HomeInUse) as copy:
        home.claim("pizza serve kitchen", shared_by="kitchen")
    assert f"in use by pizza serve kitchen (pid {kitchen.pid})" in str(copy.value)
    with pytest.raises(home.HomeInUse) as system:
        home.claim("pizza up")
    assert "pizza serve kitchen (pid" in str(system.value)
    assert "pizza serve orders (pid" in str(system.value)
