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
