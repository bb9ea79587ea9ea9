"""Bulk imports: CSV, JSONL and Parquet of events or profiles, through the tracking path, resumable."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rapport.cli import app as cli
from rapport.clock import parse_iso
from rapport.core import NewWorkspace, Rapport
from rapport.errors import ValidationError
from rapport.ingestion.importer import Importer, ImportReport, import_file, source_of
from rapport.profiles.service import ProfileReader
from rapport.resources import service as resources
from rapport.storage.base import Conn
from rapport.storage.sql.imports import load_progress
from rapport.types import JsonObject


def write_csv(path: Path, rows: list[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else orjson.dumps(line).decode()) + "\n"
                            for line in lines), encoding="utf-8")
    return path


def profile(rapport: Rapport, ws: NewWorkspace, id_type: str, value: str) -> JsonObject:
    rt = rapport.runtime(ws.workspace_id)

    def read(conn: Conn) -> JsonObject:
        reader = ProfileReader(conn, rt, rapport.keyring)
        found = reader.find(id_type, value)
        view = reader.view(found, rapport.clock.now_ms())
        view["events"] = reader.timeline(found, None, 100)["events"]
        return view

    return rapport.db.read(read)


def count(rapport: Rapport, ws: NewWorkspace, sql: str = "SELECT count(*) FROM events WHERE workspace_id = ?") -> int:
    return int(rapport.db.read(lambda c: c.value(sql, (ws.workspace_id,))))


def test_csv_events_keep_their_time_and_types(rapport: Rapport, workspace: NewWorkspace, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "events.csv", [
        ["type", "event", "user_id", "anonymous_id", "timestamp", "properties.revenue", "properties.order_id",
         "properties.coupon", "context.consent.categoryPreferences.Analytics", "traits.email", "traits.age"],
        ["identify", "", "u1", "a1", "2026-01-05T10:00:00Z", "", "", "", "true", "Ada@Example.com", "36"],
        ["track", "Order Completed", "u1", "", "2026-01-06T10:00:00Z", "49.5", "1001", "", "", "", ""],
        ["", "Order Completed", "u1", "", "2026-02-01T10:00:00Z", "20", "01002", "WELCOME10", "", "", ""],
    ])
    report = import_file(rapport, workspace.workspace_id, path)
    assert (report.total, report.rows, report.accepted, report.rejected, report.finished) == (3, 3, 3, 0, True)
    person = profile(rapport, workspace, "email", "ada@example.com")
    assert person["identifiers"]["user_id"] == ["u1"] and person["identifiers"]["anonymous_id"] == ["a1"]
    assert person["traits"]["age"] == 36
    assert person["consent"]["analytics"]["allowed"] is True
    assert person["computed"]["order_count"] == 2 and person["computed"]["revenue_total"] == 69.5
    orders = sorted((e for e in person["events"] if e["name"] == "Order Completed"), key=lambda e: e["timestamp"])
    assert [e["timestamp"] for e in orders] == ["2026-01-06T10:00:00.000Z", "2026-02-01T10:00:00.000Z"]
    assert [e["message"]["properties"]["order_id"] for e in orders] == ["1001", "01002"]
    assert orders[1]["message"]["properties"] == {"revenue": 20, "order_id": "01002", "coupon": "WELCOME10"}

    again = import_file(rapport, workspace.workspace_id, path, restart=True)
    assert (again.accepted, again.duplicates) == (0, 3)
    assert count(rapport, workspace) == 3


def test_jsonl_events_with_their_own_message_ids(rapport: Rapport, workspace: NewWorkspace, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", [
        {"type": "track", "event": "Product Viewed", "anonymousId": "anon-1", "messageId": "m-1",
         "timestamp": "2026-02-20T08:00:00Z", "properties": {"product_id": "p1", "price": 12.5},
         "context": {"consent": {"categoryPreferences": {"Analytics": True}}}},
        {"event": "Cart Added", "anonymousId": "anon-1", "messageId": "m-2", "timestamp": "2026-02-20T08:01:00Z",
         "properties.cart_id": "c1", "properties": {"product_id": "p1"}},
        {"type": "identify", "userId": "u9", "anonymousId": "anon-1", "traits": {"email": "bo@example.com"},
         "timestamp": "2026-02-20T08:02:00Z"},
    ])
    report = import_file(rapport, workspace.workspace_id, path)
    assert (report.accepted, report.rejected) == (3, 0)
    person = profile(rapport, workspace, "user_id", "u9")
    cart = next(e for e in person["events"] if e["name"] == "Cart Added")
    assert cart["message_id"] == "m-2"
    assert cart["message"]["properties"] == {"product_id": "p1", "cart_id": "c1"}
    assert person["computed"]["first_seen"] == "2026-02-20T08:00:00.000Z"


def test_parquet_events_with_typed_and_nested_columns(rapport: Rapport, workspace: NewWorkspace,
                                                      tmp_path: Path) -> None:
    table = pa.table({
        "type": ["track", "track"],
        "event": ["Order Completed", "Order Completed"],
        "userId": ["u5", "u5"],
        "timestamp": pa.array([parse_iso("2026-01-10T12:00:00Z"), parse_iso("2026-02-10T12:00:00Z")],
                              type=pa.timestamp("ms", tz="UTC")),
        "properties": [{"revenue": 30.0, "order_id": "o1"}, {"revenue": 12.25, "order_id": "o2"}],
        "properties.currency": ["EUR", "EUR"],
        "context.consent.categoryPreferences.Analytics": [True, True],
    })
    path = tmp_path / "orders.parquet"
    pq.write_table(table, path)
    report = import_file(rapport, workspace.workspace_id, path)
    assert (report.total, report.accepted, report.rejected) == (2, 2, 0)
    person = profile(rapport, workspace, "user_id", "u5")
    assert person["computed"]["revenue_total"] == 42.25
    first = min(person["events"], key=lambda e: e["timestamp"])
    assert first["timestamp"] == "2026-01-10T12:00:00.000Z"
    assert first["message"]["properties"] == {"revenue": 30.0, "order_id": "o1", "currency": "EUR"}


def test_profile_rows_become_identifies(rapport: Rapport, workspace: NewWorkspace, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "people.csv", [
        ["user_id", "email", "phone", "first_name", "age", "vip", "zip", "address.city",
         "context.consent.categoryPreferences.Email"],
        ["u1", "ada@example.com", "+49 151 12345678", "Ada", "36", "true", "01234", "Berlin", "true"],
        ["", "grace@example.com", "", "Grace", "", "false", "", "", ""],
    ])
    report = import_file(rapport, workspace.workspace_id, path, "profiles")
    assert (report.accepted, report.rejected) == (2, 0)
    ada = profile(rapport, workspace, "phone", "+4915112345678")
    assert ada["traits"] == {"email": "ada@example.com", "phone": "+49 151 12345678", "first_name": "Ada", "age": 36,
                             "vip": True, "zip": "01234", "address": {"city": "Berlin"}}
    assert ada["consent"]["marketing_email"]["allowed"] is True
    grace = profile(rapport, workspace, "email", "grace@example.com")
    assert grace["traits"]["vip"] is False
    assert grace["identifiers"]["anonymous_id"][0].startswith("imp-")
    assert "user_id" not in grace["identifiers"]


def test_bad_rows_are_reported_counted_and_skipped(rapport: Rapport, workspace: NewWorkspace,
                                                   tmp_path: Path) -> None:
    path = write_csv(tmp_path / "mixed.csv", [
        ["type", "event", "user_id", "timestamp"],
        ["track", "Page Read", "u1", "2026-01-01T00:00:00Z"],
        ["track", "Page Read", "u1", "yesterday"],
        ["track", "Page Read", "", "2026-01-01T00:00:00Z"],
        ["track", "Page Read", "u1", "2026-01-01T00:00:00Z", "surplus"],
        ["shout", "Page Read", "u1", "2026-01-01T00:00:00Z"],
        ["", "", "u1", ""],
        ["track", "Page Read", "u1", "2026-01-02T00:00:00Z"],
    ])
    report = import_file(rapport, workspace.workspace_id, path)
    assert (report.accepted, report.rejected, report.finished) == (2, 5, True)
    assert [(e.row, e.code) for e in report.errors] == [
        (2, "invalid_timestamp"), (3, "missing_id"), (4, "invalid_row"), (5, "invalid_type"), (6, "invalid_type")]
    assert "yesterday" in report.errors[0].message

    lines = write_jsonl(tmp_path / "mixed.jsonl", [
        {"event": "A", "userId": "u1"}, "{not json", "[1, 2]", "", {"event": "B", "userId": "u1"}])
    report = import_file(rapport, workspace.workspace_id, lines)
    assert (report.total, report.accepted, report.rejected) == (5, 2, 2)
    assert [(e.row, e.code) for e in report.errors] == [(2, "invalid_json"), (3, "invalid_message")]


def test_tracking_plans_apply_to_imported_rows(rapport: Rapport, workspace: NewWorkspace, tmp_path: Path) -> None:
    plan = ("kind: TrackingPlan\nname: strict\nmode: reject\nevents:\n  Order Completed:\n    schema:\n"
            "      type: object\n      required: [revenue]\n      properties:\n        revenue: {type: number}\n")
    now = rapport.clock.now_ms()
    rapport.db.write(lambda c: resources.apply(c, workspace.workspace_id, plan, "test", now))
    rapport.invalidate(workspace.workspace_id)
    path = write_csv(tmp_path / "orders.csv", [
        ["event", "user_id", "properties.revenue"], ["Order Completed", "u1", "10"],
        ["Order Completed", "u1", "ten"]])
    report = import_file(rapport, workspace.workspace_id, path)
    assert report.accepted == 1
    assert [(e.row, e.code) for e in report.errors] == [(2, "tracking_plan_violation")]


class _Interrupted(Exception):
    pass


def test_an_interrupted_import_continues_from_the_saved_position(rapport: Rapport, workspace: NewWorkspace,
                                                                   tmp_path: Path) -> None:
    path = write_csv(tmp_path / "views.csv", [["event", "user_id", "properties.n"]]
                     + [["Product Viewed", f"u{i % 4}", str(i)] for i in range(1, 24)])
    ws = workspace.workspace_id
    chunks: list[int] = []

    def interrupt_after_two(report: ImportReport) -> None:
        chunks.append(report.position)
        if len(chunks) == 2:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        import_file(rapport, ws, path, chunk_size=5, on_chunk=interrupt_after_two)
    source = source_of(path, "events")
    saved = rapport.db.read(lambda c: load_progress(c, ws, source))
    assert saved is not None and saved[0] == 10 and saved[1] == 23 and saved[2] is None

    resumed = import_file(rapport, ws, path, chunk_size=5)
    # The third chunk was already with the writer when the run stopped: it is read again and deduplicated.
    assert (resumed.resumed_from, resumed.rows, resumed.duplicates, resumed.accepted) == (10, 13, 5, 8)
    assert resumed.finished and count(rapport, workspace) == 23
    values = rapport.db.read(lambda c: c.value(
        "SELECT count(DISTINCT message_id) FROM events WHERE workspace_id = ?", (ws,)))
    assert values == 23

    nothing_new = import_file(rapport, ws, path, chunk_size=5)
    assert (nothing_new.rows, nothing_new.accepted, nothing_new.finished) == (0, 0, True)
    saved = rapport.db.read(lambda c: load_progress(c, ws, source))
    assert saved is not None and saved[0] == 23 and saved[2] is not None


def test_files_are_checked_before_anything_is_read(rapport: Rapport, workspace: NewWorkspace,
                                                   tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValidationError) as unknown:
        Importer(rapport, workspace.workspace_id, tmp_path / "notes.txt")
    assert unknown.value.code == "unknown_format"
    with pytest.raises(ValidationError) as missing:
        Importer(rapport, workspace.workspace_id, tmp_path / "absent.csv")
    assert missing.value.code == "file_not_found"
    with pytest.raises(ValidationError) as kind:
        Importer(rapport, workspace.workspace_id, write_csv(tmp_path / "x.csv", [["a"]]), "orders")  # type: ignore[arg-type]
    assert kind.value.code == "invalid_kind"


def test_the_import_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAPPORT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("RAPPORT_DATABASE_URL", raising=False)
    runner = CliRunner()
    assert runner.invoke(cli, ["workspace", "create", "shop"]).exit_code == 0
    good = write_jsonl(tmp_path / "good.jsonl", [{"event": "A", "userId": "u1"}, {"event": "B", "userId": "u2"}])
    done = runner.invoke(cli, ["import", str(good), "--workspace", "shop"])
    assert done.exit_code == 0, done.output
    assert "2 stored" in done.output
    again = runner.invoke(cli, ["import", str(good), "--workspace", "shop"])
    assert again.exit_code == 0 and "nothing new" in again.output
    people = write_csv(tmp_path / "people.csv", [["user_id", "email"], ["u1", "a@example.com"], ["", ""]])
    partly = runner.invoke(cli, ["import", str(people), "--workspace", "shop", "--kind", "profiles"])
    assert partly.exit_code == 2, partly.output
    assert "row 2 [missing_id]" in partly.output


def test_the_example_files_import_cleanly(rapport: Rapport, workspace: NewWorkspace) -> None:
    folder = Path(__file__).resolve().parents[2] / "examples" / "import"
    ws = workspace.workspace_id
    reports = [import_file(rapport, ws, folder / "events.csv"), import_file(rapport, ws, folder / "events.jsonl"),
               import_file(rapport, ws, folder / "profiles.csv", "profiles")]
    assert [(r.total, r.accepted, r.rejected) for r in reports] == [(4, 4, 0), (3, 3, 0), (3, 3, 0)]
    ada = profile(rapport, workspace, "email", "ada.fischer@example.com")
    assert ada["computed"]["order_count"] == 2 and ada["traits"]["loyalty_points"] == 1250
    assert ada["identifiers"]["anonymous_id"] == ["3f9c2a10-7c1e-4b7e-9d1a-0a1b2c3d4e5f"]
