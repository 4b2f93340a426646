"""The event catalog and the schema gate (``pizza events``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pizza import events_cli
from pizza.app import load
from pizza.cli import app as cli
from pizza.eventing import Metadata, Service, governance, registry
from pizza.eventing.catalog import Registry

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"


def contract_registry() -> Registry:
    """The contracts' messages only: other tests declare messages in the global registry."""
    load()
    contracts = Registry()
    for cls in registry:
        if cls.__module__.startswith("pizza.contracts"):
            contracts.add(cls)
    return contracts


@pytest.fixture(scope="module")
def system() -> tuple[Registry, list[Service]]:
    return contract_registry(), load()


@pytest.fixture
def entries(system: tuple[Registry, list[Service]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(e["type"], e["version"]): e for e in governance.catalog(*system)}


@pytest.fixture
def snapshots(tmp_path: Path) -> Path:
    """A copy of the committed snapshots that a test may edit."""
    copy = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, copy)
    return copy


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, system: tuple[Registry, list[Service]]) -> Any:
    """``pizza events ...`` in this process, seeing only the contracts' messages."""
    monkeypatch.setattr(events_cli, "system", lambda: system)

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(cli, ["events", *args])

    return invoke


def edit(path: Path, change: Any) -> None:
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(governance.dumps(schema))


# -- the catalog ----------------------------------------------------------------------------

CONTRACT = {  # CONTRACT.md section 3: type, version -> owner
    ("OrderConfirmed", 1): "orders", ("OrderConfirmed", 2): "orders",
    ("OrderCancelled", 1): "orders", ("OrderCompleted", 1): "orders",
    ("OrderPreparing", 1): "kitchen", ("OrderPrepared", 1): "kitchen",
    ("OrderOutForDelivery", 1): "delivery", ("OrderDelivered", 1): "delivery",
    ("OrderReadyForCollection", 1): "pickup", ("OrderCollected", 1): "pickup",
    ("LoyaltyPointsAdded", 1): "loyalty", ("SendEmail", 1): "notifications",
    ("EmailSent", 1): "notifications", ("EmailFailed", 1): "notifications",
}


def test_the_catalog_lists_every_contract_message(entries: dict[Any, dict[str, Any]]) -> None:
    assert set(CONTRACT) <= set(entries)
    for key, owner in CONTRACT.items():
        entry = entries[key]
        assert entry["schema"]["type"] == "object"
        if entry["kind"] == "event":
            assert entry["producer"] == owner
            assert entry["subject"] == f"pizza.events.{owner}.{key[0]}.v{key[1]}"
    assert entries[("OrderConfirmed", 1)]["schema"]["properties"]["orderValue"]["type"] \
        == "number"


def test_consumers_are_the_services_that_handle_it(entries: dict[Any, dict[str, Any]]) -> None:
    def consumers(type_: str, version: int = 1) -> set[str]:
        return set(entries[(type_, version)]["consumers"])

    assert "kitchen" in consumers("OrderConfirmed")
    assert "tracking" in consumers("OrderConfirmed") | consumers("OrderConfirmed", 2)
    assert consumers("OrderCancelled") == {"kitchen", "delivery", "pickup", "tracking"}
    assert consumers("OrderCompleted") == {"loyalty", "tracking"}
    assert {"delivery", "pickup", "tracking"} <= consumers("OrderPrepared")
    assert {"orders", "tracking"} <= consumers("OrderDelivered")
    assert {"orders", "tracking"} <= consumers("OrderCollected")
    assert consumers("LoyaltyPointsAdded") == {"tracking"}
    assert consumers("OrderPreparing") == {"tracking"}


def test_a_command_is_produced_by_its_senders_for_its_target(
        entries: dict[Any, dict[str, Any]]) -> None:
    send = entries[("SendEmail", 1)]
    assert (send["kind"], send["producers"], send["target"]) == (
        "command", ["orders"], "notifications")
    assert send["consumers"] == ["notifications"]
    assert send["subject"] == "pizza.commands.notifications.SendEmail.v1"
    for answer in ("EmailSent", "EmailFailed"):
        assert entries[(answer, 1)]["kind"] == "reply"
        assert entries[(answer, 1)]["producer"] == "notifications"
        assert entries[(answer, 1)]["consumers"] == ["orders"]


def test_deprecation_and_sunset(entries: dict[Any, dict[str, Any]]) -> None:
    assert entries[("OrderConfirmed", 1)]["deprecated"] is True
    assert entries[("OrderConfirmed", 1)]["sunset"] == "2027-06-30"
    assert entries[("OrderConfirmed", 2)]["deprecated"] is False
    assert entries[("OrderConfirmed", 2)]["sunset"] is None


def test_the_metadata_schema_describes_the_wire_fields() -> None:
    schema = governance.metadata_schema()
    wire = Metadata(type="OrderConfirmed", version=1, source="orders",
                    traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01").to_json()
    assert set(schema["properties"]) == set(wire)
    assert set(schema["required"]) <= set(wire)
    assert schema["properties"]["time"]["format"] == "date-time"
    assert re.match(schema["properties"]["traceparent"]["pattern"], wire["traceparent"])
    for nullable in ("causationId", "traceparent", "replyTo"):
        assert "null" in schema["properties"][nullable]["type"]


# -- the gate -------------------------------------------------------------------------------


def test_the_committed_snapshots_match_the_code(system: tuple[Registry, list[Service]]) -> None:
    report = governance.check(*system, SCHEMAS)
    assert report.ok, report.render()
    assert len(report.compatible) == len(list(system[0]))
    assert report.render().startswith(f"{len(report.compatible)} schemas compatible")


def test_pizza_events_check_passes_on_the_repository() -> None:
    done = subprocess.run([sys.executable, "-m", "pizza.cli", "events", "check"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "schemas compatible" in done.stdout


def test_a_changed_field_type_fails_naming_type_field_rule_and_consumers(
        run: Any, snapshots: Path) -> None:
    # The snapshot says orderValue was a string: the code's number breaks its consumers.
    edit(snapshots / "OrderConfirmed.v1.json",
         lambda s: s["properties"]["orderValue"].update(type="string"))
    result = run("check", "--schemas", str(snapshots))
    assert result.exit_code == 1, result.output
    out = result.output
    assert "OrderConfirmed v1: BREAKING (BACKWARD)" in out
    assert "field orderValue: type-changed" in out
    assert "kitchen" in out.split("OrderConfirmed v1")[1].splitlines()[0]
    assert "publish a new version: OrderConfirmed v3, and keep v1 until its consumers" in out
    assert "15 schemas compatible" in out


def test_a_removed_field_fails(system: tuple[Registry, list[Service]],
                               snapshots: Path) -> None:
    # The snapshot has a required field the code no longer declares.
    def add_field(schema: dict[str, Any]) -> None:
        schema["properties"]["kitchenNote"] = {"type": "string"}
        schema["required"].append("kitchenNote")

    edit(snapshots / "OrderCancelled.v1.json", add_field)
    report = governance.check(*system, snapshots)
    assert not report.ok
    [finding] = report.findings
    assert (finding.type, finding.version, finding.status) == ("OrderCancelled", 1, "breaking")
    assert [(i.path, i.rule) for i in finding.issues] == [("kitchenNote", "field-removed")]
    assert set(finding.consumers) == {"kitchen", "delivery", "pickup", "tracking"}
    assert "publish a new version: OrderCancelled v2" in finding.advice


def test_forward_mode_is_checked_too(system: tuple[Registry, list[Service]],
                                     snapshots: Path) -> None:
    # Had v1 allowed only "delivery", the code's "pickup" would be new data that the old
    # readers reject: fine BACKWARD, broken FORWARD (and FULL).
    edit(snapshots / "OrderPrepared.v1.json",
         lambda s: s["properties"]["fulfilment"].update(enum=["delivery"]))
    assert governance.check(*system, snapshots, "BACKWARD").ok
    [finding] = governance.check(*system, snapshots, "FORWARD").findings
    assert [(i.path, i.rule) for i in finding.issues] == [("fulfilment", "enum-widened")]
    assert not governance.check(*system, snapshots, "full").ok
    with pytest.raises(ValueError, match="unknown compatibility mode"):
        governance.check(*system, snapshots, "SIDEWAYS")


def test_check_takes_the_mode_and_refuses_an_unknown_one(run: Any, snapshots: Path) -> None:
    edit(snapshots / "OrderPrepared.v1.json",
         lambda s: s["properties"]["fulfilment"].update(enum=["delivery"]))
    assert run("check", "--schemas", str(snapshots)).exit_code == 0
    forward = run("check", "--schemas", str(snapshots), "--mode", "forward")
    assert forward.exit_code == 1 and "BREAKING (FORWARD)" in forward.output
    assert run("check", "--mode", "SIDEWAYS").exit_code == 2


def test_a_version_without_a_snapshot_is_new_and_fails(run: Any, snapshots: Path) -> None:
    (snapshots / "LoyaltyPointsAdded.v1.json").unlink()
    result = run("check", "--schemas", str(snapshots))
    assert result.exit_code == 1
    assert "LoyaltyPointsAdded v1: NEW, not yet snapshotted" in result.output
    assert "run `pizza events snapshot`" in result.output


def test_a_snapshot_whose_version_is_gone_is_breaking(
        system: tuple[Registry, list[Service]], snapshots: Path) -> None:
    shutil.copy(snapshots / "OrderPreparing.v1.json", snapshots / "OrderBurnt.v1.json")
    report = governance.check(*system, snapshots)
    [finding] = report.findings
    assert (finding.type, finding.status) == ("OrderBurnt", "removed")
    assert "version removed" in report.render()


# -- snapshots ------------------------------------------------------------------------------


def test_snapshot_writes_one_stable_file_per_message(
        system: tuple[Registry, list[Service]], tmp_path: Path) -> None:
    done = governance.snapshot(system[0], tmp_path / "new")
    assert len(done.written) == len(list(system[0]))
    text = (tmp_path / "new" / "OrderConfirmed.v2.json").read_text()
    assert text.endswith("}\n") and text == governance.dumps(json.loads(text))
    assert text == (SCHEMAS / "OrderConfirmed.v2.json").read_text()
    again = governance.snapshot(system[0], tmp_path / "new")
    assert not again.written and len(again.unchanged) == len(done.written)


def test_snapshot_refuses_to_overwrite_incompatibly(
        run: Any, system: tuple[Registry, list[Service]], snapshots: Path) -> None:
    path = snapshots / "OrderConfirmed.v1.json"
    edit(path, lambda s: s["properties"]["orderValue"].update(type="string"))
    edited = path.read_text()
    (snapshots / "LoyaltyPointsAdded.v1.json").unlink()

    with pytest.raises(governance.SnapshotRefused) as refused:
        governance.snapshot(system[0], snapshots)
    assert "orderValue" in str(refused.value)
    result = run("snapshot", "--schemas", str(snapshots))
    assert result.exit_code == 1 and "nothing written" in result.output
    assert path.read_text() == edited  # nothing written, not even the new one
    assert not (snapshots / "LoyaltyPointsAdded.v1.json").exists()

    result = run("snapshot", "--schemas", str(snapshots), "--force")
    assert result.exit_code == 0, result.output
    assert governance.check(*system, snapshots).ok


def test_snapshot_force_deletes_the_snapshot_of_a_removed_version(
        system: tuple[Registry, list[Service]], snapshots: Path) -> None:
    stale = snapshots / "OrderBurnt.v1.json"
    shutil.copy(snapshots / "OrderPreparing.v1.json", stale)
    with pytest.raises(governance.SnapshotRefused):
        governance.snapshot(system[0], snapshots)
    done = governance.snapshot(system[0], snapshots, force=True)
    assert done.removed == [stale] and not stale.exists()


# -- the CLI's catalog and docs -------------------------------------------------------------


def test_catalog_command_prints_a_table_and_json(run: Any) -> None:
    table = run("catalog")
    assert table.exit_code == 0
    assert "OrderConfirmed" in table.output and "2027-06-30" in table.output
    listed = json.loads(run("catalog", "--json").output)
    assert {(e["type"], e["version"]) for e in listed} >= set(CONTRACT)


def test_docs_writes_a_static_catalog_and_the_asyncapi_document(
        run: Any, tmp_path: Path) -> None:
    result = run("docs", str(tmp_path / "site"))
    assert result.exit_code == 0, result.output
    page = (tmp_path / "site" / "index.html").read_text()
    assert "OrderConfirmed v1" in page and "Deprecated" in page and "2027-06-30" in page
    assert "pizza.events.orders.OrderConfirmed.v1" in page
    assert "&quot;orderValue&quot;" in page  # the schema, pretty-printed and escaped
    assert "<script" not in page and "http" not in page.split("<body>")[0]  # self-contained
    document = json.loads((tmp_path / "site" / "asyncapi.json").read_text())
    assert document["asyncapi"] == "3.0.0"


def test_the_html_catalog_escapes_what_it_shows() -> None:
    entry = {"type": "Evil<b>", "version": 1, "kind": "event", "subject": "a.<i>",
             "description": "<script>alert('x')</script> & more", "producer": "o\"rders",
             "producers": ["o\"rders"], "target": None, "consumers": ["<k>"],
             "deprecated": True, "sunset": "<2027>", "schema": {"title": "</pre><script>"}}
    page = events_cli.render_html([entry], governance.metadata_schema(), "T<itle>")
    assert "<script" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page
    assert "&lt;/pre&gt;&lt;script&gt;" in page and "T&lt;itle&gt;" in page
