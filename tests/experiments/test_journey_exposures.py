"""A journey split that an Experiment names records an exposure when an enrollment passes it: the unit is the
profile the split hashed, the variant is the path it took (none for the split's holdout)."""

from __future__ import annotations

from api.support import NOW, ApiClient
from journeys.support import World

from experiments.support import WITH_HOLDOUT
from rapport.core import NewWorkspace, Rapport
from rapport.journeys.model import SplitStep, build
from rapport.journeys.split import assign
from rapport.storage.sql import exposures as exposures_sql


def test_passing_the_split_records_the_exposure(rapport: Rapport, client: ApiClient, workspace: NewWorkspace) -> None:
    world = World(rapport, client, workspace)
    world.apply(WITH_HOLDOUT)
    people = [world.person(f"j{i}", purposes=("analytics", "personalization")) for i in range(24)]
    outsider = world.person("nope", purposes=("analytics",))
    for i in range(24):
        world.event(f"j{i}", "Cart Added")
    world.event("nope", "Cart Added")
    world.work()
    rows = rapport.db.read(lambda c: exposures_sql.of_experiment(c, workspace.workspace_id, "checkout_test"))
    spec = rapport.runtime(world.id, fresh=True).specs["Journey"]["checkout"]
    split = build(spec).step("0")
    assert isinstance(split, SplitStep)
    expected = {}
    for pid in people:
        path = assign("checkout", split, pid)
        expected[pid] = (None, "holdout") if path == "holdout" else (path, "variant")
    assert {r[0]: (r[1], r[2]) for r in rows} == expected
    assert outsider not in expected  # no consent for the journey's purpose: never enrolled, never exposed
    assert {r[3] for r in rows} == {"journey:checkout/0"}
    assert {r[4] for r in rows} == {NOW}
    # Profile ids differ per run; 24 people miss one of the three outcomes once in several thousand runs.
    assert {v for v, _ in expected.values()} == {None, "control", "bold"}
