"""A journey split that an Experiment names records an exposure when an enrollment passes it: the unit is the
profile the split hashed, the variant is the path it took (none for the split's holdout), only while the experiment
runs and the person allows its purpose; a person in the workspace's global holdout is recorded apart."""

from __future__ import annotations

from api.support import NOW, ApiClient
from journeys.support import World

from experiments.support import RESOURCES, WITH_HOLDOUT
from rapport.core import NewWorkspace, Rapport
from rapport.experiments import service
from rapport.experiments.assign import GlobalHoldout
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


def exposed(rapport: Rapport, workspace: NewWorkspace) -> dict[str, tuple[str | None, str]]:
    rows = rapport.db.read(lambda c: exposures_sql.of_experiment(c, workspace.workspace_id, "checkout_test"))
    return {str(r[0]): (r[1], str(r[2])) for r in rows}


def test_only_people_allowing_the_experiments_purpose_are_exposed(rapport: Rapport, client: ApiClient,
                                                                   workspace: NewWorkspace) -> None:
    world = World(rapport, client, workspace)
    # The journey runs on personalization; its experiment measures under analytics.
    world.apply(RESOURCES.replace('split: "0"\npurpose: personalization', 'split: "0"\npurpose: analytics'))
    both = world.person("both", purposes=("analytics", "personalization"))
    journey_only = world.person("journey_only", purposes=("personalization",))
    withdrawn = world.person("withdrawn", purposes=("analytics", "personalization"))
    world.consent("withdrawn", ["analytics"], state="withdrawn")
    for user in ("both", "journey_only", "withdrawn"):
        world.event(user, "Cart Added")
    world.work()
    enrolled = rapport.db.read(lambda c: c.all("SELECT profile_id FROM journey_enrollments WHERE workspace_id = ?",
                                               (workspace.workspace_id,)))
    assert {str(r[0]) for r in enrolled} == {both, journey_only, withdrawn}  # all took a path of the split
    assert set(exposed(rapport, workspace)) == {both}


def test_a_stopped_experiment_records_nobody(rapport: Rapport, client: ApiClient, workspace: NewWorkspace) -> None:
    world = World(rapport, client, workspace)
    world.apply(RESOURCES.replace("segments: [vip]\n", "segments: [vip]\nstatus: stopped\n"))
    world.person("s1", purposes=("analytics", "personalization"))
    world.event("s1", "Cart Added")
    world.work()
    assert exposed(rapport, workspace) == {}


def test_the_global_holdout_is_recorded_apart_and_counted_apart(rapport: Rapport, client: ApiClient,
                                                                 workspace: NewWorkspace) -> None:
    world = World(rapport, client, workspace)
    world.apply(RESOURCES)
    response = world.call("PATCH", "/api/v1/settings", json={"global_holdout": {"salt": "gh-x", "percent": 50}})
    assert response.status_code == 200, response.text
    holdout = GlobalHoldout("gh-x", 50)
    people = [world.person(f"g{i}", purposes=("analytics", "personalization")) for i in range(16)]
    for i in range(16):
        world.event(f"g{i}", "Cart Added")
    world.work()
    held = {pid for pid in people if holdout.holds(pid)}
    assert 0 < len(held) < len(people)
    found = exposed(rapport, workspace)
    assert {pid for pid, (_, reason) in found.items() if reason == "global_holdout"} == held
    assert all(variant is None for pid, (variant, _) in found.items() if pid in held)
    assert all(variant in ("control", "bold") and reason == "variant" for pid, (variant, reason) in found.items()
               if pid not in held)
    rt = rapport.runtime(world.id, fresh=True)
    results = rapport.db.read(lambda c: service.results(c, rt, "checkout_test", world.clock.now_ms()))
    assert results.held_out == {"global_holdout": len(held)}
    assert sum(results.units.values()) == len(people) - len(held)
