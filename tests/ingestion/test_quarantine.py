"""Replaying quarantined messages: what a replay selects, how plans and stored bodies are read again, the CLI."""

from __future__ import annotations

from itertools import count
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from rapport.cli import app as cli
from rapport.clock import parse_iso, to_iso
from rapport.errors import ValidationError
from rapport.ingestion.parse import parse_message
from rapport.ingestion.quarantine import (
    MAX_REPORTED,
    ReplayError,
    ReplayReport,
    Selection,
    decode_cursor,
    encode_cursor,
    replay_plans,
    replayable,
)
from rapport.types import MINUTE

NOW = parse_iso("2026-03-02T10:00:00Z")
PLAN = """
kind: TrackingPlan
name: shop
mode: quarantine
events:
  Order Completed:
    schema: {{type: object, properties: {{revenue: {{type: {revenue}}}}}}}
"""


def ids() -> Any:
    numbers = count()
    return lambda: f"msg{next(numbers)}"


@pytest.mark.parametrize(("body", "expected"), [
    ({"ids": ["q1", "q2", "q1"]}, Selection(ids=("q1", "q2"))),
    ({"event": "Order Completed"}, Selection(event="Order Completed")),
    ({"all": True}, Selection()),
], ids=["ids", "event", "all"])
def test_a_selection_is_one_of_three(body: Any, expected: Selection) -> None:
    assert Selection.from_json(body) == expected


def test_a_selection_names_what_is_wrong() -> None:
    with pytest.raises(ValidationError) as extra:
        Selection.from_json({"all": True, "plan": "shop"})
    assert extra.value.code == "invalid_request" and extra.value.details == [{"unknown": ["plan"]}]
    with pytest.raises(ValidationError, match="at most"):
        Selection.from_json({"ids": [f"q{n}" for n in range(10_001)]})


def test_reject_plans_keep_messages_in_quarantine_and_come_first() -> None:
    plans = [{"name": "a", "mode": "flag"}, {"name": "b"}, {"name": "c", "mode": "quarantine"},
             {"name": "d", "mode": "reject"}]
    assert [(p["name"], p["mode"]) for p in replay_plans(plans)] == [
        ("b", "quarantine"), ("d", "quarantine"), ("a", "flag"), ("c", "quarantine")]
    assert replay_plans([]) == []


def test_a_stored_body_parses_to_the_same_message() -> None:
    sent_at = NOW + 60 * MINUTE
    raw = {"type": "track", "userId": "u1", "event": "Viewed", "timestamp": to_iso(sent_at - 5 * MINUTE),
           "sentAt": to_iso(sent_at), "properties": {"n": 1}}
    first = parse_message(raw, implied_type=None, received_at=NOW, batch_sent_at=None, batch_context=None,
                          new_id=ids())
    again = replayable(orjson.loads(orjson.dumps(first.body)), first.received_at, ids())
    assert again == first
    assert again.ts == NOW - 5 * MINUTE


def test_a_batch_level_sent_at_is_not_applied_twice() -> None:
    raw = {"type": "identify", "anonymousId": "a1", "timestamp": to_iso(NOW + 50 * MINUTE), "traits": {"x": 1}}
    first = parse_message(raw, implied_type=None, received_at=NOW, batch_sent_at=NOW + 60 * MINUTE,
                          batch_context={"library": {"name": "sdk"}}, new_id=ids())
    again = replayable(dict(first.body), NOW, ids())
    assert (again.ts, again.body, again.message_id) == (NOW - 10 * MINUTE, first.body, "msg0")


def test_cursors_round_trip_and_refuse_others() -> None:
    assert decode_cursor(encode_cursor(123)) == 123
    for bad in ("", "MTIz", "x:1", "!!!"):
        with pytest.raises(ValidationError) as error:
            decode_cursor(bad)
        assert error.value.code == "invalid_cursor"


def test_a_report_counts_everything_but_keeps_a_bounded_list() -> None:
    report = ReplayReport(accepted=2, duplicates=1)
    assert report.replayed == 3
    for n in range(MAX_REPORTED + 5):
        report.not_found += 1
        report.fail(ReplayError(f"q{n}", None, "quarantine_not_found", "gone"))
    assert (report.not_found, len(report.errors)) == (MAX_REPORTED + 5, MAX_REPORTED)


def test_the_quarantine_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAPPORT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("RAPPORT_DATABASE_URL", raising=False)
    runner = CliRunner()
    assert runner.invoke(cli, ["workspace", "create", "shop"]).exit_code == 0
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.format(revenue="number"), encoding="utf-8")
    assert runner.invoke(cli, ["apply", "-f", str(plan)]).exit_code == 0
    orders = tmp_path / "orders.jsonl"
    orders.write_text("".join(orjson.dumps({"userId": "u1", "event": "Order Completed", "messageId": f"o{n}",
                                            "properties": {"revenue": f"{n}.00"}}).decode() + "\n"
                              for n in range(3)), encoding="utf-8")
    imported = runner.invoke(cli, ["import", str(orders)])
    assert imported.exit_code == 0 and "3 quarantined" in imported.output, imported.output

    listed = runner.invoke(cli, ["quarantine", "list", "--limit", "2"])
    assert listed.exit_code == 0, listed.output
    assert "3 quarantined message(s)" in listed.output and "more: --cursor" in listed.output
    assert "properties.revenue: '2.00' is not of type 'number'" in listed.output
    as_json = runner.invoke(cli, ["quarantine", "list", "--json", "--event", "Order Completed"])
    items = [orjson.loads(line) for line in as_json.stdout.splitlines() if line.startswith("{")]
    assert [i["message_id"] for i in items] == ["o2", "o1", "o0"]
    assert items[0]["payload"]["properties"] == {"revenue": "2.00"}

    one = runner.invoke(cli, ["quarantine", "replay", items[0]["id"]])
    assert one.exit_code == 2 and "still quarantined" in one.output and "tracking_plan_violation" in one.output
    assert runner.invoke(cli, ["quarantine", "replay"]).exit_code == 1

    plan.write_text(PLAN.format(revenue="[number, string]"), encoding="utf-8")
    assert runner.invoke(cli, ["apply", "-f", str(plan)]).exit_code == 0
    done = runner.invoke(cli, ["quarantine", "replay", "--all", "--json"])
    assert done.exit_code == 0, done.output
    report = orjson.loads(done.stdout)
    assert (report["matched"], report["accepted"], report["errors"]) == (3, 3, [])
    assert "0 quarantined message(s)" in runner.invoke(cli, ["quarantine", "list"]).output
    twice = runner.invoke(cli, ["quarantine", "replay", items[0]["id"]])
    assert twice.exit_code == 2 and "quarantine_not_found" in twice.output
