"""The benchmark package runs end to end in a tiny mode and writes well-formed results.

No timing thresholds here: only that every variant ran, measured something positive, and
that the JSON has the shape ``pizza bench`` and the plots rely on.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from rich.console import Console

from pizza.bench import SCENARIOS, run
from pizza.bench.common import PAYLOAD_BYTES, make_message, ratio, rotation, variant

pytestmark = pytest.mark.timeout(300)


def test_payload_is_a_real_envelope_of_about_420_bytes() -> None:
    message = make_message(7)
    document = orjson.loads(message.payload)
    assert set(document) == {"metadata", "data"}
    assert document["metadata"]["id"] == message.message_id
    assert document["metadata"]["type"] == "BenchPinged"
    assert abs(len(message.payload) - PAYLOAD_BYTES) <= 20


def test_the_bench_message_stays_out_of_the_global_registry() -> None:
    from pizza.bench.common import BENCH_REGISTRY, BenchPingedV1
    from pizza.eventing import registry

    assert registry.get("BenchPinged", 1) is None  # `pizza events` never sees it
    assert BENCH_REGISTRY.get("BenchPinged", 1) is BenchPingedV1


def test_rounds_rotate_and_ratios_pair_rounds() -> None:
    assert [rotation(["a", "b", "c"], r) for r in range(3)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    variants = {"a": variant("A", [10, 20, 30], "msg/s"), "b": variant("B", [20, 20, 20], "msg/s")}
    result = ratio(variants, "a", "b", goal=0.9)
    assert result["rounds"] == [0.5, 1.0, 1.5]
    assert result["median"] == 1.0 and result["met"] is True
    assert ratio(variants, "a", "b", goal=1.1)["met"] is False
    assert ratio(variants, "a", "b")["met"] is None


def _check_scenario(result: dict, variants: set[str], ratios: set[str], n: int) -> None:
    assert result["status"] == "ok", result.get("traceback") or result
    assert result["rounds"] == 1
    assert result["n"] >= n
    assert set(result["variants"]) == variants
    for item in result["variants"].values():
        assert item["unit"] == "msg/s"
        assert len(item["rounds"]) == 1 and len(item["seconds"]) == 1
        assert item["median"] > 0 and item["min"] > 0 and item["max"] >= item["min"]
        assert item["label"]
    assert set(result["ratios"]) == ratios
    for name, item in result["ratios"].items():
        numerator, denominator = name.split("/")
        assert (item["numerator"], item["denominator"]) == (numerator, denominator)
        top = result["variants"][numerator]["rounds"][0]
        bottom = result["variants"][denominator]["rounds"][0]
        assert item["rounds"] == [pytest.approx(top / bottom)]
        assert item["median"] == item["rounds"][0] > 0
        # met says whether the measured ratio reaches its goal; no goal, no verdict
        assert item["met"] is (None if item["goal"] is None else item["median"] >= item["goal"])


def test_publish_and_consume_in_tiny_mode(tmp_path: Path) -> None:
    out = tmp_path / "results" / "results.json"
    with (tmp_path / "tables.txt").open("w") as tables:
        results = run(["publish", "consume"], quick=True, out=out, plot_dir=tmp_path / "plots",
                      n=200, rounds=1, console=Console(file=tables, width=140))
    assert "relay/publish_async" in (tmp_path / "tables.txt").read_text()

    written = orjson.loads(out.read_bytes())
    assert written["scenarios"].keys() == results["scenarios"].keys() == {"publish", "consume"}
    machine = written["machine"]
    assert machine["cpu_count"] >= 1 and machine["python"]
    assert "nats_server" in machine and "cpu_model" in machine

    publish = written["scenarios"]["publish"]
    _check_scenario(publish, {"relay", "publish_async", "gathered_publish"},
                    {"relay/publish_async", "relay/gathered_publish"}, 200)
    assert publish["ratios"]["relay/publish_async"]["goal"] == 0.9
    assert publish["payload_bytes"] > 300

    consume = written["scenarios"]["consume"]
    _check_scenario(consume, {"kernel", "raw", "faststream", "faststream_batch"},
                    {"kernel/raw", "kernel/faststream", "kernel/faststream_batch"}, 200)
    assert consume["n"] % 256 == 0

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "plots" / "publish.png").stat().st_size > 0
    assert (tmp_path / "plots" / "consume.png").stat().st_size > 0


def test_unknown_scenario_is_refused(tmp_path: Path) -> None:
    assert "e2e" in SCENARIOS
    with pytest.raises(ValueError, match="unknown scenario"):
        run(["nope"], quick=True, out=tmp_path / "r.json", plot_dir=None)


def test_a_peer_that_is_not_installed_is_skipped_not_a_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A default install (`pip install -e .`) has no FastStream: the consume scenario
    still measures the kernel against raw nats-py, lists the peer as skipped, and the run
    is not marked failed."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "faststream" else real(name, *a))
    out = tmp_path / "results.json"
    with (tmp_path / "tables.txt").open("w") as tables:
        results = run(["consume"], quick=True, out=out, plot_dir=None, n=200, rounds=1,
                      console=Console(file=tables, width=140))
    consume = results["scenarios"]["consume"]
    _check_scenario(consume, {"kernel", "raw"}, {"kernel/raw"}, 200)
    assert consume["skipped"] == ["faststream", "faststream_batch"]
    assert any("FastStream is not installed" in note for note in consume["notes"])


# -- orders: CPU per completed order, throughput, the floor ---------------------------------


def test_a_goal_is_met_on_its_side_of_the_target_and_unjudged_without_a_value() -> None:
    from pizza.bench.common import goal

    at_most = goal("CPU", 4.0, 5.0, "ms", at_most=True)
    assert at_most["met"] is True and at_most["direction"] == "<="
    assert goal("CPU", 5.5, 5.0, "ms", at_most=True)["met"] is False
    assert goal("rate", 249.0, 250.0, "orders/s", at_most=False)["met"] is False
    assert goal("rate", 250.0, 250.0, "orders/s", at_most=False)["met"] is True
    assert goal("rate", None, 250.0, "orders/s", at_most=False)["met"] is None


def test_sqlite_commits_are_counted_from_outside_the_writing_connection(
        tmp_path: Path) -> None:
    """The commit counter the orders scenario reads from each database's WAL index: one
    per transaction that wrote, none for one that wrote nothing, across a checkpoint."""
    import sqlite3

    from pizza.bench.processes import sqlite_commits

    db = sqlite3.connect(tmp_path / "kitchen.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (x INTEGER)")
    before = sqlite_commits(tmp_path)["kitchen"]
    for value in range(3):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES (?)", (value,))
        db.execute("COMMIT")
    db.execute("BEGIN IMMEDIATE")
    db.execute("COMMIT")  # wrote nothing
    assert sqlite_commits(tmp_path)["kitchen"] - before == 3
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("INSERT INTO t VALUES (9)")
    assert sqlite_commits(tmp_path)["kitchen"] - before == 4
    db.close()


def test_a_process_tree_cpu_is_read_per_process_and_labelled() -> None:
    import subprocess
    import sys
    import time

    from pizza.bench import processes

    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc (not Linux): the orders scenario skips itself there")
    assert processes.label(["/x/pizza", "serve", "kitchen", "--port", "1"], False, "s") == \
        "kitchen"
    assert processes.label(["/x/pizza", "serve", "kitchen", "pickup", "--port", "1"], False,
                           "s") == "kitchen+pickup"
    assert processes.label(["/x/bin/nats-server", "-js"], False, "s") == "broker"
    assert processes.label(["/x/pizza", "up"], True, "supervisor") == "supervisor"
    spinner = subprocess.Popen([sys.executable, "-c",
                                "import time\nend = time.process_time() + 0.4\n"
                                "while time.process_time() < end: pass\n"
                                "time.sleep(30)"])
    try:
        before = processes.tree_cpu(spinner.pid, "spinner")
        assert set(before) == {spinner.pid} and before[spinner.pid].label == "spinner"
        time.sleep(1.5)
        after = processes.tree_cpu(spinner.pid, "spinner")
        spent = processes.spent({}, after)["spinner"]
        assert 0.3 <= spent <= 1.5
        assert processes.spent(after, after) == {"spinner": 0.0}
        assert spinner.pid in processes.descendants(__import__("os").getpid())
    finally:
        spinner.kill()
        spinner.wait()


def test_the_floor_moves_and_commits_what_the_story_counts() -> None:
    """Per order: every published message is delivered as often as the story's average
    asks (here 7 deliveries over 3 messages: 3, 2, 2), and as many commits."""
    import asyncio

    from pizza.bench.orders import Story, _fan_out, floor

    story = Story(published=3, consumed=7, commits=4, commits_by_database={})
    assert _fan_out(story) == [3, 2, 2]
    assert _fan_out(Story(2, 1, 0, {})) == [1, 0]
    other = Story(published=2, consumed=2, commits=1, commits_by_database={})
    result = asyncio.run(floor([story, other], orders=5))  # 3 of the first, 2 of the other
    assert result["published"] == 3 * 3 + 2 * 2
    assert result["delivered"] == 3 * 7 + 2 * 2
    assert result["commits"] == 3 * 4 + 2 * 1
    assert result["cpu_ms_per_order"] > 0
    parts = result["cpu_ms_per_order_by_process"]
    assert set(parts) == {"nats-py + sqlite3", "broker"}
    assert sum(parts.values()) == pytest.approx(result["cpu_ms_per_order"])


def test_orders_in_tiny_mode(tmp_path: Path) -> None:
    """A handful of orders through both ways of running `pizza up --simulate`: every
    figure is there, split by process, with goals judged, beside the floor."""
    from pizza.app import SERVICES
    from pizza.supervisor import spread

    out = tmp_path / "results.json"
    with (tmp_path / "tables.txt").open("w") as tables:
        results = run(["orders"], quick=True, out=out, plot_dir=None, rounds=1,
                      console=Console(file=tables, width=160), orders=6)
    orders = results["scenarios"]["orders"]
    if orders["status"] == "skipped":
        pytest.skip(f"the system cannot run here: {orders['reason']}")
    assert orders["status"] == "ok", orders.get("traceback") or orders
    assert orders == orjson.loads(out.read_bytes())["scenarios"]["orders"]
    assert orders["n"] == 6 and orders["clients"] == 16
    assert set(orders["variants"]) == {"all", "two", "one", "floor", "all_throughput",
                                       "two_throughput", "one_throughput"}
    for name, item in orders["variants"].items():
        assert item["unit"] == ("orders/s" if name.endswith("throughput") else "CPU-ms/order")
        assert len(item["rounds"]) == 1 and item["median"] > 0
    for mode in ("all", "two", "one"):
        (run_,) = orders["runs"][mode]
        assert run_["completed"] == run_["accepted"] == 6 and run_["errors"] == 0
        assert run_["settled"]
    assert set(orders["ratios"]) == {"all/floor", "two/floor", "one/floor",
                                     "two_throughput/one_throughput",
                                     "all_throughput/one_throughput"}
    assert orders["ratios"]["all/floor"]["median"] == pytest.approx(
        orders["variants"]["all"]["median"] / orders["variants"]["floor"]["median"])

    split = orders["split_cpu_ms_per_order"]
    assert set(split["all"]) == {*SERVICES, "supervisor", "broker"}  # every process
    pairs = {"+".join(group) for group in spread(SERVICES, 2)}  # two processes
    assert set(split["two"]) == {*pairs, "supervisor", "broker"}
    assert set(split["one"]) == {"pizza up", "broker"}
    assert set(split["floor"]) == {"nats-py + sqlite3", "broker"}
    for mode in ("all", "two", "one", "floor"):
        assert sum(split[mode].values()) == pytest.approx(orders["variants"][mode]["median"])
    assert set(orders["loop_lag_ms"]["all"]) == set(SERVICES)
    assert set(orders["loop_lag_ms"]["two"]) == pairs
    assert set(orders["loop_lag_ms"]["one"]) == {"pizza up"}

    for mode in ("all", "two", "one"):
        story = orders["story"][mode]
        for kind in ("delivery", "pickup"):
            assert story[kind]["published"] > 5 and story[kind]["consumed"] > 5
            assert story[kind]["commits"] == sum(story[kind]["commits_by_database"].values())
            assert {"orders", "kitchen", "tracking"} <= set(story[kind]["commits_by_database"])
    (floor_run,) = orders["runs"]["floor"]
    delivery, pickup = orders["story"]["all"]["delivery"], orders["story"]["all"]["pickup"]
    assert floor_run["published"] == 3 * delivery["published"] + 3 * pickup["published"]
    assert floor_run["commits"] == 3 * delivery["commits"] + 3 * pickup["commits"]

    goals = orders["goals"]
    assert set(goals) == {f"{figure}_{mode}" for mode in ("all", "two", "one")
                          for figure in ("cpu_ms_per_order", "completed_per_s")}
    assert goals["cpu_ms_per_order_all"]["value"] == orders["variants"]["all"]["median"]
    for item in goals.values():
        assert item["met"] is (item["value"] <= item["goal"] if item["direction"] == "<="
                               else item["value"] >= item["goal"])
    text = (tmp_path / "tables.txt").read_text()
    assert "CPU-ms per completed order" in text and "goal <= 5" in text
    assert "notifications" in text  # the split table


def test_charts_without_matplotlib_are_skipped_not_a_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--plot on a default install (no matplotlib): the tables and JSON are written, the
    chart is listed as skipped, and the run is not marked failed."""
    import importlib.util
    import sys

    real = importlib.util.find_spec
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with (tmp_path / "tables.txt").open("w") as tables:
        results = run(["publish"], quick=True, out=tmp_path / "r.json",
                      plot_dir=tmp_path / "plots", n=100, rounds=1,
                      console=Console(file=tables, width=140))
    publish = results["scenarios"]["publish"]
    assert publish["status"] == "ok"
    assert publish["plot"].startswith("skipped: matplotlib is not installed")
    assert not (tmp_path / "plots").exists()
    assert "chart skipped" in (tmp_path / "tables.txt").read_text()
