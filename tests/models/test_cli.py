"""`rapport models ...` on a small shop: train prints a summary, list/show/score report the catalog."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from api.support import NOW
from typer.testing import CliRunner

from models.conftest import apply, build_shop
from rapport.cli import app as cli
from rapport.clock import FrozenClock
from rapport.core import Rapport
from rapport.settings import load_settings

MODEL = ("kind: Model\nname: reorder\ntarget: {event: Order Completed, within: 30d}\n"
         "features: [orders_90d, last_order_at]\nwrite_to: reorder_score\n")


def test_train_score_list_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAPPORT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("RAPPORT_DATABASE_URL", raising=False)
    clock = FrozenClock(NOW, seed=secrets.randbits(64))
    with_clock = Rapport(load_settings(), clock=clock)
    try:
        shop = build_shop(with_clock, clock, people=150, seed=5)
        clock.set(NOW)
        apply(with_clock, shop.ws, MODEL)
    finally:
        with_clock.close()
    monkeypatch.setattr("rapport.cli._rapport", lambda: Rapport(load_settings(), clock=clock))
    runner = CliRunner()

    trained = runner.invoke(cli, ["models", "train", "reorder", "-w", shop.ws])
    assert trained.exit_code == 0, trained.output
    assert "reorder v1" in trained.output and "AUC" in trained.output and "orders_90d" in trained.output
    assert "scores written back for 151 people" in trained.output

    scored = runner.invoke(cli, ["models", "score", "reorder", "-w", shop.ws, "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["scored"] == 151

    listed = runner.invoke(cli, ["models", "list", "-w", shop.ws])
    assert listed.exit_code == 0 and listed.stdout.startswith("reorder  v1  AUC ")
    assert "-> computed.reorder_score" in listed.stdout
    shown = runner.invoke(cli, ["models", "show", "reorder", "-w", shop.ws, "--json"])
    assert [v["version"] for v in json.loads(shown.stdout)["versions"]] == [1]

    missing = runner.invoke(cli, ["models", "train", "nope", "-w", shop.ws])
    assert missing.exit_code == 1 and "no model 'nope'" in missing.output
