"""Training on the synthetic shop (``conftest``): the model finds the dependence, is calibrated, reads features
as of the cutoff, is deterministic, scores without scikit-learn exactly as scikit-learn does, and its scores
come back as a computed trait both rule engines read alike. Tests that change people (erasure, consent) come
last in this module."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import orjson
import pytest
from api.support import NOW

from models.conftest import CUTOFF, PEOPLE, Shop, apply, build_shop, ingest
from rapport.clock import FrozenClock, to_iso
from rapport.core import Rapport
from rapport.models import service
from rapport.models.catalog import Models
from rapport.models.spec import score_series
from rapport.models.train import auc, design_row, fit
from rapport.privacy.erasure import erase
from rapport.rules import parse
from rapport.segments import stored
from rapport.segments.sql import compile_rule
from rapport.storage.sql import models as models_sql
from rapport.types import DAY, WorkspaceId

MODEL = """
kind: Model
name: reorder
description: People who order again within 30 days
target: {event: Order Completed, within: 30d}
features: [orders_90d, email_open_rate, last_order_at]
write_to: reorder_score
purpose: analytics
---
kind: Segment
name: likely_buyers
rule: computed.reorder_score > 0.5
"""


@pytest.fixture(scope="module")
def trained(shop: Shop) -> dict[str, Any]:
    """The shop with the model applied and trained once (scores written back)."""
    shop.clock.set(NOW)
    apply(shop.rapport, shop.ws, MODEL)
    return Models(shop.rapport, shop.ws).train("reorder", "test")


def users(rapport: Rapport, ws: WorkspaceId) -> dict[str, str]:
    """profile id -> user id."""
    return {str(p): str(u) for p, u in rapport.db.read(lambda c: c.all(
        "SELECT DISTINCT profile_id, user_id FROM events WHERE workspace_id = ? AND user_id IS NOT NULL", (ws,)))}


def engines(rapport: Rapport, ws: WorkspaceId, rule: str, at: int) -> tuple[set[str], set[str]]:
    """The profiles ``rule`` selects at ``at``: (in memory, in SQL)."""
    rt = rapport.runtime(ws, fresh=True)
    node = parse(rule)
    everyone = rapport.db.read(lambda c: models_sql.profiles_at(c, ws, None))
    memory = rapport.db.read(lambda c: stored.matching(c, rt, node, everyone, at))

    def select(conn: Any) -> set[str]:
        sql, params = compile_rule(node, rt, conn.dialect, at)
        return {str(r[0]) for r in conn.all(sql, params)}

    return memory, rapport.db.read(select)


def test_the_model_finds_the_dependence_and_is_calibrated(shop: Shop, trained: dict[str, Any]) -> None:
    metrics = trained["metrics"]
    assert metrics["auc"] > 0.75 and metrics["auc_raw"] > 0.75
    # About 200 test rows in 10 bins: a perfectly calibrated model's ECE varies by a few hundredths from one
    # draw of profile ids (hence of the split) to the next; a miscalibrated one is far above this bound.
    assert metrics["ece"] < 0.15 and metrics["brier"] < 0.2
    assert metrics["n"] > 100 and 0 < metrics["base_rate"] < 1
    # Everyone who existed at the cutoff with consent, and nobody else ('late', 'no-consent').
    assert trained["population"]["trained_on"] == PEOPLE
    assert trained["population"]["positives"] == sum(shop.ordered_after.values())
    assert trained["coefficients"]["orders_90d"] > 0.5
    assert trained["scored"] == PEOPLE + 1  # 'late' is scored now: it exists and consented


def test_features_are_read_as_of_the_cutoff_and_labels_after_it(shop: Shop, trained: dict[str, Any]) -> None:
    rt = shop.rapport.runtime(shop.ws, fresh=True)
    spec = service.model_spec(rt, "reorder")
    snap = shop.rapport.db.read(lambda c: service.snapshot(c, rt, shop.rapport.keyring, spec, NOW))
    assert snap.cutoff == CUTOFF
    who = users(shop.rapport, shop.ws)
    named = [who[p] for p in snap.dataset.ids]
    assert "late" not in named and "no-consent" not in named and len(named) == PEOPLE
    for user, row, label in zip(named, snap.dataset.rows, snap.dataset.labels, strict=True):
        assert row[0] == shop.orders_before[user]
        assert row[1] is None  # no e-mail was ever delivered
        if shop.order_times[user]:
            assert row[2] == pytest.approx((CUTOFF - max(t - t % 1000 for t in shop.order_times[user])) / DAY,
                                           abs=1e-3)
        else:
            assert row[2] is None
        assert label == int(shop.ordered_after[user])


def test_same_data_gives_the_same_parameters_and_versions_increase(shop: Shop, trained: dict[str, Any]) -> None:
    models = Models(shop.rapport, shop.ws)
    again = models.train("reorder", "test", write_back=False)
    assert again["version"] == trained["version"] + 1
    versions = models.describe("reorder")["versions"]
    assert [v["version"] for v in versions][:2] == [again["version"], trained["version"]]
    assert versions[0]["parameters"] == versions[1]["parameters"]
    assert versions[0]["metrics"] == versions[1]["metrics"]
    stored_params = orjson.loads(shop.rapport.db.read(lambda c: models_sql.version(
        c, shop.ws, "reorder", again["version"]))[7])
    assert all(isinstance(v, int | float) for key in ("means", "scales", "coefficients", "missing_coefficients")
               for v in stored_params[key])


def test_pure_scoring_equals_scikit_learn_and_explains_itself(shop: Shop, trained: dict[str, Any]) -> None:
    rt = shop.rapport.runtime(shop.ws, fresh=True)
    spec = service.model_spec(rt, "reorder")
    snap = shop.rapport.db.read(lambda c: service.snapshot(c, rt, shop.rapport.keyring, spec, NOW))
    fitted = fit(snap.dataset, "reorder", 1, seed="reorder")
    model = fitted.model
    rows = snap.dataset.rows[:80]
    matrix = np.array([design_row(r, model.means, model.scales, fitted.indicators) for r in rows])
    expected = fitted.estimator.predict_proba(matrix)[:, 1]
    for row, want in zip(rows, expected, strict=True):
        scored = model.score(dict(zip(model.features, row, strict=True)))
        assert abs(scored.raw_probability - float(want)) < 1e-9
        assert abs(model.intercept + math.fsum(r.contribution for r in scored.reasons) - scored.log_odds) < 1e-9
        sizes = [abs(r.contribution) for r in scored.reasons]
        assert sizes == sorted(sizes, reverse=True)
    grid = [i / 200 for i in range(201)]
    mapped = [model.calibration.apply(p, math.log(p / (1 - p)) if 0 < p < 1 else math.copysign(50, p - 0.5))
              for p in grid]
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(mapped))
    assert mapped[-1] > mapped[0]


def test_scores_are_a_computed_trait_both_engines_read_alike(shop: Shop, trained: dict[str, Any]) -> None:
    rapport, ws = shop.rapport, shop.ws
    for rule in ("computed.reorder_score > 0.5", "computed.reorder_score <= 0.2 or computed.orders_90d >= 4",
                 "not (computed.reorder_score >= 0.3)", "exists(computed.reorder_score)"):
        memory, sql = engines(rapport, ws, rule, NOW)
        assert memory == sql, rule
    likely, _ = engines(rapport, ws, "computed.reorder_score > 0.5", NOW)
    assert 0 < len(likely) < PEOPLE
    who = users(rapport, ws)
    assert sum(shop.orders_before[who[p]] for p in likely) / len(likely) > 2.5  # the likely buyers order more
    # Before its scoring time a score does not exist.
    assert engines(rapport, ws, "exists(computed.reorder_score)", NOW - 1000) == (set(), set())
    # The segment reading the score was kept live by the scoring transaction.
    members = {str(r[0]) for r in rapport.db.read(lambda c: c.all(
        "SELECT profile_id FROM segment_history WHERE workspace_id = ? AND segment = 'likely_buyers'"
        " AND exited_at IS NULL", (ws,)))}
    assert members == likely
    # The computed-trait catalog lists the score as a live trait (no events to backfill it from).
    from rapport.profiles import backfill

    status = {s["name"]: s for s in rapport.db.read(lambda c: backfill.status(c, rapport.runtime(ws)))}
    assert status["reorder_score"]["state"] == "live" and status["reorder_score"]["aggregate"] == "last"
    # The profile view shows the score among the computed traits, as the model would score it now.
    rt = rapport.runtime(ws, fresh=True)
    [model] = rapport.db.read(lambda c: service.scoring_models(c, rt)).values()
    pid = sorted(likely)[0]
    values = rapport.db.read(lambda c: service.read_features(c, rt, model.features, [pid], NOW))[pid]
    from rapport.profiles.service import ProfileReader

    view = rapport.db.read(lambda c: ProfileReader(c, rt, rapport.keyring).computed(pid, NOW))
    assert view["reorder_score"] == pytest.approx(model.score(values).probability, abs=1e-12)


def test_serving_is_cached_by_stored_version(shop: Shop, trained: dict[str, Any]) -> None:
    rt = shop.rapport.runtime(shop.ws, fresh=True)
    first = shop.rapport.db.read(lambda c: service.scoring_models(c, rt))
    second = shop.rapport.db.read(lambda c: service.scoring_models(c, rt))
    assert first["reorder"] is second["reorder"]
    newest = shop.rapport.db.read(lambda c: models_sql.latest(c, shop.ws))
    assert [(n, int(v)) for n, v in newest] == [("reorder", first["reorder"].version)]


def test_withdrawn_consent_removes_the_score_at_the_next_scoring(shop: Shop, trained: dict[str, Any]) -> None:
    rapport, ws, clock = shop.rapport, shop.ws, shop.clock
    who = {u: p for p, u in users(rapport, ws).items()}
    pid = who["u0001"]
    later = NOW + 1000
    ingest(rapport, clock, ws, later, [{"type": "track", "event": "Page Viewed", "userId": "u0001",
                                        "timestamp": to_iso(later),
                                        "context": {"consent": {"categoryPreferences": {"Analytics": False}}}}])
    out = Models(rapport, ws).score("reorder", "test")
    assert out["scored"] == PEOPLE
    memory, sql = engines(rapport, ws, "exists(computed.reorder_score)", later)
    assert pid not in memory and memory == sql and len(memory) == PEOPLE
    # The score it held before withdrawal still reads at an instant before it.
    assert pid in engines(rapport, ws, "exists(computed.reorder_score)", NOW)[0]


def test_erasure_removes_the_scores(shop: Shop, trained: dict[str, Any]) -> None:
    rapport, ws = shop.rapport, shop.ws
    who = {u: p for p, u in users(rapport, ws).items()}
    pid = who["u0002"]
    sid = score_series("reorder").id

    def held(conn: Any) -> int:
        return int(conn.value("SELECT COUNT(*) FROM buckets WHERE workspace_id = ? AND profile_id = ? AND series = ?",
                              (ws, pid, sid)))

    assert rapport.db.read(held) >= 1
    rt = rapport.runtime(ws)
    rapport.db.write(lambda c: erase(c, ws, rt.wrapped_key, rapport.keyring, pid, "test", rapport.clock.now_ms()))
    assert rapport.db.read(held) == 0
    memory, sql = engines(rapport, ws, "exists(computed.reorder_score)", rapport.clock.now_ms())
    assert pid not in memory and memory == sql


def test_a_future_event_never_leaks_into_the_features(store: Rapport) -> None:
    """Orders in the 30 days after the cutoff make the label; ``orders_30d`` read now would then be perfectly
    predictive. Read as of the cutoff it holds only the orders before it, which say nothing of the label."""
    clock = store.clock
    assert isinstance(clock, FrozenClock)
    shop = build_shop(store, clock, people=300, seed=11, label=lambda _k, _rng: 0.4)
    clock.set(NOW)
    apply(store, shop.ws, "kind: Model\nname: leak\ntarget: {event: Order Completed, within: 30d}\n"
                          "features: [orders_30d]\n")
    rt = store.runtime(shop.ws, fresh=True)
    spec = service.model_spec(rt, "leak")
    snap = store.db.read(lambda c: service.snapshot(c, rt, store.keyring, spec, NOW))
    who = users(store, shop.ws)
    for pid, row in zip(snap.dataset.ids, snap.dataset.rows, strict=True):
        assert row[0] == sum(1 for t in shop.order_times[who[pid]] if CUTOFF - 30 * DAY < t <= CUTOFF)
    now_values = store.db.read(lambda c: service.read_features(c, rt, spec.features, list(snap.dataset.ids), NOW))
    leaked = [float(now_values[p]["orders_30d"] or 0) for p in snap.dataset.ids]
    assert auc(leaked, list(snap.dataset.labels)) == 1.0  # the trap is real
    honest = [float(r[0] or 0) for r in snap.dataset.rows]
    assert abs((auc(honest, list(snap.dataset.labels)) or 0.5) - 0.5) < 0.15
    out = Models(store, shop.ws).train("leak", "test")
    assert out["metrics"]["auc"] < 0.75
