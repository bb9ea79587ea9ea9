"""The demo's personalization and measurement: the cart-offer experiment has results, the placements decide,
the models are trained and the recommendations built — all from the generated shop."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from api.support import NOW, ApiClient
from conftest import Backend

from rapport.api.app import create_app
from rapport.clock import FrozenClock
from rapport.core import Rapport
from rapport.demo import experiment
from rapport.demo.run import DemoOptions, DemoResult, run_demo, tour
from rapport.experiments import service as experiments_service
from rapport.experiments.results import to_json
from rapport.journeys.model import HOLDOUT
from rapport.journeys.split import assign
from rapport.storage.sql import exposures as exposures_sql

MEDIUM = DemoOptions(customers=400, months=3, seed=11)
MINUTE = 60_000


@pytest.fixture(scope="module")
def demo(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rapport, DemoResult]]:
    rapport = Rapport(backend.settings(tmp_path_factory.mktemp("measured")), clock=FrozenClock(NOW, seed=3))
    try:
        yield rapport, run_demo(rapport, MEDIUM)
    finally:
        rapport.close()


def test_abandoned_carts_are_those_the_journey_carries_to_its_split() -> None:
    day = 86_400_000
    carts = [experiment.Cart("p1", "u1", None, 0, {}), experiment.Cart("p1", "u1", None, 3 * day, {}),
             experiment.Cart("p1", "u1", None, 8 * day, {}), experiment.Cart("p2", None, "a2", 0, {}),
             experiment.Cart("p3", "u3", None, 0, {})]
    orders = {"p2": [experiment.SPLIT_AFTER], "p3": [experiment.SPLIT_AFTER + 1]}
    kept = experiment.abandoned(carts, orders)
    # p1: the second cart falls inside the re-entry period; p2 ordered before the split (inclusive); p3 after it.
    assert [(c.profile_id, c.at) for c in kept] == [("p1", 0), ("p3", 0), ("p1", 8 * day)]


def test_the_cart_offer_split_is_played_with_the_journeys_own_assignment(demo: tuple[Rapport, DemoResult]) -> None:
    rapport, result = demo
    played = result.played
    assert played is not None and played.exposed > 30
    rows = rapport.db.read(lambda c: exposures_sql.of_experiment(c, result.workspace_id, experiment.EXPERIMENT))
    assert len(rows) == played.exposed
    rt = rapport.runtime(result.workspace_id)
    split = experiment.split_of(rt.journeys[experiment.JOURNEY])
    for unit, variant, reason, source, first_at, _last, _n in rows:
        path = assign(experiment.JOURNEY, split, str(unit))
        assert (variant, reason) == ((None, "holdout") if path == HOLDOUT else (path, "variant"))
        assert source == f"journey:{experiment.JOURNEY}/{split.id}"
        assert first_at <= NOW
    again = experiment.play(rapport, result.workspace_id)
    assert again.skipped
    assert len(rapport.db.read(lambda c: exposures_sql.of_experiment(
        c, result.workspace_id, experiment.EXPERIMENT))) == len(rows)


def test_the_experiment_has_results_over_every_exposed_person(demo: tuple[Rapport, DemoResult]) -> None:
    rapport, result = demo
    rt = rapport.runtime(result.workspace_id)
    out = to_json(rapport.db.read(lambda c: experiments_service.results(c, rt, experiment.EXPERIMENT, NOW)))
    rows = rapport.db.read(lambda c: exposures_sql.of_experiment(c, result.workspace_id, experiment.EXPERIMENT))
    arms = Counter("holdout" if variant is None else str(variant) for _u, variant, *_ in rows)
    assert out["units"] == {name: arms.get(name, 0) for name in out["units"]}
    assert sum(out["units"].values()) == len(rows)
    assert [m["metric"] for m in out["metrics"]][:2] == ["converted_7d", "revenue_7d"]
    assert out["control"] == "holdout"


def test_placements_decide_and_models_rank_offers(demo: tuple[Rapport, DemoResult]) -> None:
    rapport, result = demo
    assert any(note.startswith("model churn v1") for note in result.notes), result.notes
    assert any(note.startswith("recommendations:") for note in result.notes), result.notes
    sample = result.sample
    assert sample is not None and sample.user_id is not None
    client = ApiClient(create_app(rapport, worker=False))
    try:
        admin = client.post("/api/v1/decide", json={"user_id": sample.user_id, "placements": ["home_hero", "offers"]},
                            headers={"Authorization": f"Bearer {result.admin_token}"})
        assert admin.status_code == 200, admin.text
        decisions = admin.json()["decisions"]
        assert decisions["home_hero"]["block"] in {"hero_vip", "hero_returning", "hero_new", "hero_default"}
        offers = decisions["offers"]
        if offers["reason"]["kind"] == "rank":
            assert 0.0 < offers["confidence"] < 1.0
            assert offers["reason"]["expected_value"] == pytest.approx(offers["reason"]["score"]
                                                                       * offers["reason"]["value"])
        assert result.user_hash is not None and any(result.user_hash in line for line in tour(result, "http://x"))
        public = client.post("/api/v1/decide", json={"user_id": sample.user_id, "user_hash": result.user_hash,
                                                     "placements": ["home_hero", "offers"]},
                             auth=(result.write_key, ""))
        assert public.status_code == 200, public.text
        assert sample.user_id not in public.text and sample.email not in public.text
        assert {d["block"] for d in public.json()["decisions"].values()} == {d["block"] for d in decisions.values()}
    finally:
        client.close()
