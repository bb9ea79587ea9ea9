"""The experiments admin routes and commands: the list, results as JSON and as a PNG chart, the one error shape."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from experiments.support import RESOURCES, expose, grant, ingest, simulate
from typer.testing import CliRunner

from api.support import NOW, ApiClient, admin, apply_yaml, assert_error
from rapport.cli import app as cli
from rapport.core import NewWorkspace, Rapport
from rapport.storage.sql import exposures as exposures_sql
from rapport.types import DAY, WorkspaceId

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def populated(rapport: Rapport, client: ApiClient, workspace: NewWorkspace) -> dict[str, int]:
    """Sixty simulated units and three held out; returns the units per variant."""
    assert apply_yaml(client, workspace, RESOURCES).status_code == 200
    units = simulate(n=60, seed=3)
    ingest(client, workspace, units)
    expose(rapport, workspace, units)
    held = [(f"h{i}", "checkout_test", None, "holdout", "journey:checkout/0", NOW - 5 * DAY) for i in range(3)]
    rapport.db.write(lambda c: exposures_sql.record_many(c, workspace.workspace_id, held))
    grant(rapport, workspace, [row[0] for row in held])
    return {v: sum(u.variant == v and u.measured for u in units) for v in ("bold", "control")}


def test_list_results_and_chart(rapport: Rapport, client: ApiClient, workspace: NewWorkspace) -> None:
    counts = populated(rapport, client, workspace)
    listing = admin(client, workspace, "GET", "/api/v1/experiments")
    assert listing.status_code == 200, listing.text
    [entry] = listing.json()["experiments"]
    assert entry["name"] == "checkout_test" and entry["status"] == "running"
    assert entry["source"] == "journey:checkout/0" and entry["control"] == "control"
    assert sorted(v["name"] for v in entry["variants"]) == ["bold", "control"]
    assert {v["name"]: v["units"] for v in entry["variants"]} == counts and entry["held_out"] == {"holdout": 3}

    response = admin(client, workspace, "GET", "/api/v1/experiments/checkout_test/results")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["experiment"] == "checkout_test" and body["trustworthy"] is True
    assert body["held_out"] == {"holdout": 3} and body["units"] == counts
    assert body["metrics"][0]["in_window"] == {"bold": 0, "control": 0}
    assert body["metrics"][0]["metric"] == "converted_7d"
    first = body["metrics"][0]["comparisons"][0]
    assert first["variant"] == "bold" and first["method"] == "two_proportion_z"
    assert 0 <= first["p_value"] <= first["p_holm"] <= 1 and first["p_bh"] <= first["p_holm"]
    assert first["ci"][0] <= first["estimate"] <= first["ci"][1]
    assert 0 <= first["bayes"]["chance_to_beat_control"] <= 1
    assert 0 < first["sequential"]["p_value"] <= 1 and first["cuped"]["method"] == "cuped_welch_t"
    ratio = next(m for m in body["metrics"] if m["metric"] == "ctr")
    assert ratio["comparisons"][0]["method"] == "ratio_delta_z" and ratio["comparisons"][0]["cuped"] is None
    assert [s["segment"] for s in body["segments"]] == ["vip"]

    chart = admin(client, workspace, "GET", "/api/v1/experiments/checkout_test/results.png")
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/png"
    assert chart.content.startswith(PNG_MAGIC) and len(chart.content) > 5000


@pytest.mark.parametrize("path", ["/api/v1/experiments/nope/results", "/api/v1/experiments/nope/results.png"])
def test_an_unknown_experiment_is_a_404_in_the_one_error_shape(client: ApiClient, workspace: NewWorkspace,
                                                               path: str) -> None:
    assert_error(admin(client, workspace, "GET", path), 404, "experiment_not_found")


def test_results_need_the_experiments_read_scope(rapport: Rapport, client: ApiClient,
                                                 workspace: NewWorkspace) -> None:
    viewer = rapport.create_token(WorkspaceId(workspace.workspace_id), "viewer", None, "test")
    analyst = rapport.create_token(WorkspaceId(workspace.workspace_id), "analyst", None, "test")
    assert admin(client, workspace, "GET", "/api/v1/experiments", token=viewer).status_code == 403
    assert admin(client, workspace, "GET", "/api/v1/experiments", token=analyst).status_code == 200


def test_the_commands(rapport: Rapport, client: ApiClient, workspace: NewWorkspace, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    counts = populated(rapport, client, workspace)
    monkeypatch.setenv("RAPPORT_DATABASE_URL", rapport.settings.database_url)
    monkeypatch.setenv("RAPPORT_DATA_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("RAPPORT_MASTER_KEY", str(rapport.settings.master_key))
    runner = CliRunner()
    ws = workspace.workspace_id
    listed = runner.invoke(cli, ["experiments", "list", "-w", ws])
    assert listed.exit_code == 0, listed.output
    assert listed.stdout == (f"checkout_test  running  journey:checkout/0  units: bold {counts['bold']}, "
                             f"control {counts['control']}  held out 3\n")
    png = tmp_path / "lift.png"
    shown = runner.invoke(cli, ["experiments", "results", "checkout_test", "-w", ws, "--png", str(png)])
    assert shown.exit_code == 0, shown.output
    assert "converted_7d (primary)" in shown.stdout and "sample ratio check" in shown.stdout
    assert png.read_bytes().startswith(PNG_MAGIC)
    as_json = runner.invoke(cli, ["experiments", "results", "checkout_test", "-w", ws, "--json"])
    assert as_json.exit_code == 0, as_json.output
    api = admin(client, workspace, "GET", "/api/v1/experiments/checkout_test/results").json()
    # Every window closed long before either instant, so only the instant itself differs.
    assert {**orjson.loads(as_json.stdout), "at": None} == {**api, "at": None}
    missing = runner.invoke(cli, ["experiments", "results", "nope", "-w", ws])
    assert missing.exit_code == 1


@pytest.mark.parametrize(("purposes", "purpose", "message"), [
    ("", "necessary", "an experiment cannot use the purpose 'necessary'"),
    ("kind: ConsentPurpose\nname: upkeep\nlegal_basis: contract\ndescription: Upkeep\n---\n", "upkeep",
     "consent purpose 'upkeep' has legal basis 'contract'"),
])
def test_apply_refuses_an_experiment_on_a_purpose_allowed_without_consent(
        client: ApiClient, workspace: NewWorkspace, purposes: str, purpose: str, message: str) -> None:
    text = purposes + RESOURCES.replace('split: "0"\npurpose: personalization', f'split: "0"\npurpose: {purpose}')
    response = apply_yaml(client, workspace, text)
    assert_error(response, 400, "invalid_resource")
    [detail] = [d for d in response.json()["details"] if d.get("field") == "purpose"]
    assert detail["kind"] == "Experiment" and str(detail["message"]).startswith(message), detail
