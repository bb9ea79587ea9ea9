"""Segment exports as CSV and Parquet through the admin API and the CLI: the same members as the members
API, page by page, personal columns only on request and with permission (on SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from api.support import ApiClient, admin, apply_yaml, assert_error, track
from rapport.api.app import run_backfills, run_segments
from rapport.cli import app as cli
from rapport.core import NewWorkspace, Rapport
from rapport.segments import export
from rapport.segments.catalog import Segments
from rapport.workspaces import model

GRANT = {"consent": {"categoryPreferences": {"Analytics": True, "Email": True}}}
NO_EMAIL = {"consent": {"categoryPreferences": {"Analytics": True, "Email": False}}}
SEGMENT = 'kind: Segment\nname: pro\npurpose: marketing_email\nrule: traits.plan == "pro"\n'
BASE = ["profile_id", "entered_at", "version", "activatable", "user_id", "anonymous_id"]


def people(client: ApiClient, rapport: Rapport, ws: NewWorkspace) -> None:
    """Five pro members (one without e-mail consent, one with two anonymous ids, one anonymous only,
    one with a phone) and one free profile."""
    def send(path: str, body: dict[str, Any]) -> None:
        response = track(client, ws, path, body)
        assert response.status_code == 200, response.text

    for i in range(3):
        send("/v1/identify", {"userId": f"u{i}", "context": GRANT,
                              "traits": {"plan": "pro", "email": f"u{i}@example.com"}})
    send("/v1/identify", {"userId": "u1", "traits": {"phone": "+49 30 901820"}, "context": GRANT})
    send("/v1/identify", {"userId": "quiet", "traits": {"plan": "pro"}, "context": NO_EMAIL})
    send("/v1/identify", {"userId": "u0", "anonymousId": "anon-b", "traits": {}, "context": GRANT})
    send("/v1/identify", {"userId": "u0", "anonymousId": "anon-a", "traits": {}, "context": GRANT})
    send("/v1/identify", {"anonymousId": "visitor", "traits": {"plan": "pro"}, "context": GRANT})
    send("/v1/identify", {"userId": "free", "traits": {"plan": "free"}, "context": GRANT})
    assert apply_yaml(client, ws, SEGMENT).status_code == 200
    rapport.runtime(ws.workspace_id, fresh=True)
    run_backfills(rapport)
    run_segments(rapport)


def expected_rows(client: ApiClient, ws: NewWorkspace, personal: tuple[str, ...] = ()) -> list[list[Any]]:
    """The members API's view of ``pro``, as export rows (identifier values joined by ';', else None)."""
    members = admin(client, ws, "GET", "/api/v1/segments/pro/members", params={"limit": 1000}).json()["members"]
    return [[m["id"], m["entered_at"], m["version"], m["activatable"],
             *(";".join(m["identifiers"][t]) if m["identifiers"].get(t) else None
               for t in ("user_id", "anonymous_id", *personal))] for m in members]


def csv_rows(data: bytes) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of a CSV export, typed back as the members API has them."""
    def typed(column: str, value: str) -> Any:
        if column == "version":
            return int(value)
        if column == "activatable":
            return {"true": True, "false": False}[value]
        return value or None

    header, *lines = list(csv.reader(io.StringIO(data.decode())))
    return header, [[typed(c, v) for c, v in zip(header, line, strict=True)] for line in lines]


def parquet_rows(data: bytes) -> tuple[list[str], list[list[Any]]]:
    table = pq.read_table(io.BytesIO(data))
    return table.column_names, [list(row.values()) for row in table.to_pylist()]


def get_export(client: ApiClient, ws: NewWorkspace, *, token: str | None = None, **params: str) -> Any:
    return admin(client, ws, "GET", "/api/v1/segments/pro/export", token=token, params=params)


def test_csv_and_parquet_hold_the_members(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    people(client, rapport, workspace)
    expected = expected_rows(client, workspace)
    assert len(expected) == 5
    assert sorted(r[3] for r in expected) == [False, True, True, True, True]
    assert [r[5] for r in expected if r[4] == "u0"] == ["anon-a;anon-b"]
    response = get_export(client, workspace)  # CSV by default
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="pro.csv"'
    assert csv_rows(response.content) == (BASE, expected)
    assert "example.com" not in response.text and "+49" not in response.text
    response = get_export(client, workspace, format="parquet")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    assert parquet_rows(response.content) == (BASE, expected)
    schema = pq.read_schema(io.BytesIO(response.content))
    assert [str(schema.field(c).type) for c in ("version", "activatable", "user_id")] == ["int64", "bool", "string"]


def test_personal_columns_on_request(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    people(client, rapport, workspace)
    expected = expected_rows(client, workspace, ("email", "phone"))
    assert ["u1@example.com", "+4930901820"] in [r[6:] for r in expected]
    response = get_export(client, workspace, include="phone,email")  # columns keep their fixed order
    assert csv_rows(response.content) == ([*BASE, "email", "phone"], expected)
    response = get_export(client, workspace, format="parquet", include="email")
    assert parquet_rows(response.content) == ([*BASE, "email"], [r[:7] for r in expected])


def test_pages_are_chunks_and_row_groups(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    people(client, rapport, workspace)
    expected = expected_rows(client, workspace)
    segments = Segments(rapport, workspace.workspace_id)
    pages = list(segments.export("pro", page_size=2))
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [list(r) for p in pages for r in p] == expected
    chunks = list(export.encode("csv", export.COLUMNS, segments.export("pro", page_size=2)))
    assert len(chunks) == 4  # the header, then one chunk per page
    assert csv_rows(b"".join(chunks)) == (BASE, expected)
    data = b"".join(export.encode("parquet", export.COLUMNS, segments.export("pro", page_size=2)))
    assert pq.ParquetFile(io.BytesIO(data)).metadata.num_row_groups == 3
    assert parquet_rows(data) == (BASE, expected)
    assert list(segments.export("pro", page_size=5)) == [pages[0] + pages[1] + pages[2]]


def test_an_empty_segment_exports_a_header_or_an_empty_table(
    client: ApiClient, rapport: Rapport, workspace: NewWorkspace
) -> None:
    assert apply_yaml(client, workspace, SEGMENT).status_code == 200
    assert get_export(client, workspace).text == ",".join(BASE) + "\r\n"
    assert parquet_rows(get_export(client, workspace, format="parquet").content) == (BASE, [])


def test_roles_and_bad_requests(
    client: ApiClient, rapport: Rapport, workspace: NewWorkspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    people(client, rapport, workspace)
    viewer = rapport.create_token(workspace.workspace_id, "viewer", None, "test")
    analyst = rapport.create_token(workspace.workspace_id, "analyst", None, "test")
    assert_error(get_export(client, workspace, token=viewer), 403, "forbidden")
    assert get_export(client, workspace, token=analyst, include="email").status_code == 200
    # A role that reads segments but not profiles exports members, never their e-mail or phone.
    monkeypatch.setitem(model.ROLE_SCOPES, "analyst", model.ROLE_SCOPES["analyst"] - {"profiles:read"})
    assert get_export(client, workspace, token=analyst).status_code == 200
    body = assert_error(get_export(client, workspace, token=analyst, include="email"), 403, "forbidden")
    assert "'profiles:read'" in body["message"] and "email" in body["message"]
    assert "'xlsx'" in assert_error(get_export(client, workspace, format="xlsx"), 400, "invalid_request")["message"]
    body = assert_error(get_export(client, workspace, include="emial"), 400, "invalid_request")
    assert "did you mean 'email'?" in body["message"]
    missing = admin(client, workspace, "GET", "/api/v1/segments/nope/export")
    assert_error(missing, 404, "segment_not_found")


def test_the_export_command(client: ApiClient, rapport: Rapport, workspace: NewWorkspace, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    people(client, rapport, workspace)
    monkeypatch.setenv("RAPPORT_DATABASE_URL", rapport.settings.database_url)
    monkeypatch.setenv("RAPPORT_DATA_DIR", str(tmp_path / "cli"))
    assert rapport.settings.master_key is not None
    monkeypatch.setenv("RAPPORT_MASTER_KEY", str(rapport.settings.master_key))
    runner = CliRunner()
    ws = workspace.workspace_id
    csv_file, parquet_file = tmp_path / "pro.csv", tmp_path / "pro.parquet"
    done = runner.invoke(cli, ["segments", "export", "pro", "-w", ws, "--format", "csv", "-o", str(csv_file)])
    assert done.exit_code == 0, done.output
    assert csv_file.read_bytes() == get_export(client, workspace).content
    done = runner.invoke(cli, ["segments", "export", "pro", "-w", ws, "--format", "parquet", "-o", str(parquet_file),
                               "--include", "email"])
    assert done.exit_code == 0, done.output
    assert parquet_rows(parquet_file.read_bytes()) == ([*BASE, "email"], [
        r[:7] for r in expected_rows(client, workspace, ("email",))])
    to_stdout = runner.invoke(cli, ["segments", "export", "pro", "-w", ws])
    assert to_stdout.exit_code == 0 and to_stdout.stdout_bytes == csv_file.read_bytes()
    missing = runner.invoke(cli, ["segments", "export", "nope", "-w", ws, "-o", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 1 and not (tmp_path / "nope.csv").exists()
    assert runner.invoke(cli, ["segments", "export", "pro", "-w", ws, "--format", "parquet"]).exit_code == 1
