"""Sticky assignment on the unified profile: stored once, kept through merges, given back by unmerges, erased
with the person. Merges are triggered the way a site triggers them: an identify with a userId after anonymous
activity."""

from __future__ import annotations

from typing import Any

import pytest
from api.support import NOW, ApiClient, admin, profile_of, track

from rapport.core import NewWorkspace, Rapport
from rapport.errors import NotFoundError, ValidationError
from rapport.experiments import sticky
from rapport.experiments.assign import Assignment, Variant, bucket
from rapport.storage.base import Conn
from rapport.storage.sql import experiments as experiments_sql
from rapport.storage.sql import identity as identity_sql

ANALYTICS_OK = {"consent": {"categoryPreferences": {"Analytics": True}}}
EXPERIMENT, SALT = "checkout-button", "salt-checkout-button"


def only(name: str) -> list[Variant]:
    """Variants that place every unit in ``name``: the test knows the variant a new assignment gets."""
    return [Variant(name)]


def assign(rapport: Rapport, ws: NewWorkspace, profile_id: str, variants: list[Variant], **more: Any) -> Assignment:
    return rapport.db.write(lambda conn: sticky.assignment(
        conn, ws.workspace_id, EXPERIMENT, SALT, profile_id, variants, now=NOW, **more))


def stored(rapport: Rapport, ws: NewWorkspace, profile_id: str) -> str | None:
    """The variant a live profile holds, or ``"-"`` when it holds no assignment."""
    row = rapport.db.read(lambda c: experiments_sql.stored(c, ws.workspace_id, profile_id, EXPERIMENT))
    return "-" if row is None else row[0]


def rows(rapport: Rapport, ws: NewWorkspace) -> list[tuple[Any, ...]]:
    """(origin, profile, shadowed_by, variant) of every assignment row of the workspace."""
    return sorted(rapport.db.read(lambda c: c.all(
        "SELECT origin_profile_id, profile_id, shadowed_by, variant FROM experiment_assignments"
        " WHERE workspace_id = ?", (ws.workspace_id,))), key=lambda r: (r[0], r[3] or ""))


def identify(client: ApiClient, ws: NewWorkspace, **body: Any) -> None:
    response = track(client, ws, "/v1/identify", {**body, "context": ANALYTICS_OK})
    assert response.status_code == 200, response.text


def two_people(client: ApiClient, ws: NewWorkspace) -> tuple[str, str]:
    """A known user and an anonymous visitor seen after, not merged yet: (anonymous profile, user profile).

    The older profile wins a merge, so the visitor's profile is the one merged away."""
    identify(client, ws, userId="u1", traits={"email": "u1@example.com"})
    identify(client, ws, anonymousId="anon-1", traits={"color": "red"})
    anon, user = profile_of(client, ws, anonymous_id="anon-1")["id"], profile_of(client, ws, user_id="u1")["id"]
    assert anon != user
    return anon, user


def join(client: ApiClient, ws: NewWorkspace) -> dict[str, Any]:
    """The visitor signs in: one message with both ids merges the two profiles; returns the merge."""
    response = track(client, ws, "/v1/track", {"userId": "u1", "anonymousId": "anon-1", "event": "Signed In",
                                               "messageId": "joiner", "context": ANALYTICS_OK})
    assert response.status_code == 200, response.text
    merged = profile_of(client, ws, user_id="u1")["id"]
    assert profile_of(client, ws, anonymous_id="anon-1")["id"] == merged
    [merge] = admin(client, ws, "GET", f"/api/v1/profiles/{merged}/merges").json()["merges"]
    assert merge["winner"] == merged
    return dict(merge)


def unmerge(client: ApiClient, ws: NewWorkspace, merge: dict[str, Any]) -> None:
    response = admin(client, ws, "POST", f"/api/v1/profiles/{merge['winner']}/unmerge",
                     json={"merge_id": merge["id"]})
    assert response.status_code == 200, response.text


def test_an_assignment_is_stored_once_and_returned_after(rapport: Rapport, client: ApiClient,
                                                         workspace: NewWorkspace) -> None:
    identify(client, workspace, anonymousId="anon-1")
    pid = profile_of(client, workspace, anonymous_id="anon-1")["id"]
    variants = [Variant("control"), Variant("treatment")]
    first = assign(rapport, workspace, pid, variants)
    assert first.bucket == bucket(SALT, pid) and first.reason == "variant"
    assert first.variant in {"control", "treatment"}
    # Later calls return what was stored, whatever the experiment's settings became.
    assert assign(rapport, workspace, pid, variants) == first
    assert assign(rapport, workspace, pid, only("other"), holdout_percent=100) == first
    assert assign(rapport, workspace, pid, variants, traffic_percent=0) == first
    assert rows(rapport, workspace) == [(pid, pid, None, first.variant)]


def test_a_held_out_unit_stays_held_out(rapport: Rapport, client: ApiClient, workspace: NewWorkspace) -> None:
    identify(client, workspace, anonymousId="anon-1")
    pid = profile_of(client, workspace, anonymous_id="anon-1")["id"]
    held = assign(rapport, workspace, pid, only("A"), holdout_percent=100)
    assert (held.variant, held.reason) == (None, "holdout")
    assert assign(rapport, workspace, pid, only("A")) == held
    assert rows(rapport, workspace) == [(pid, pid, None, None)]


def test_concurrent_first_assignments_agree_on_the_first_row_stored(rapport: Rapport,
                                                                    workspace: NewWorkspace) -> None:
    ws = workspace.workspace_id

    def race(conn: Conn) -> tuple[bool, bool, Any]:
        identity_sql.insert_profile(conn, ws, "p-race", b"key", NOW)
        first = experiments_sql.insert(conn, ws, "p-race", EXPERIMENT, "A", 1, "variant", NOW)
        second = experiments_sql.insert(conn, ws, "p-race", EXPERIMENT, "B", 2, "variant", NOW)
        return first, second, experiments_sql.stored(conn, ws, "p-race", EXPERIMENT)

    first, second, row = rapport.db.write(race)
    assert (first, second) == (True, False)
    assert row is not None and (row[0], row[1]) == ("A", 1)
    assert assign(rapport, workspace, "p-race", only("B")).variant == "A"


def test_unknown_profiles_and_empty_experiment_names_are_refused(rapport: Rapport, workspace: NewWorkspace) -> None:
    with pytest.raises(NotFoundError, match="no profile 'nobody'"):
        assign(rapport, workspace, "nobody", only("A"))
    with pytest.raises(ValidationError, match="experiment must be a non-empty name"):
        rapport.db.write(lambda conn: sticky.assignment(conn, workspace.workspace_id, "", SALT, "nobody",
                                                        only("A"), now=NOW))


def test_a_person_merged_after_assignment_keeps_the_variant(rapport: Rapport, client: ApiClient,
                                                            workspace: NewWorkspace) -> None:
    anon, user = two_people(client, workspace)
    assert assign(rapport, workspace, anon, only("X")).variant == "X"
    assert stored(rapport, workspace, user) == "-"

    merge = join(client, workspace)
    root = merge["winner"]
    assert (merge["winner"], merge["loser"]) == (user, anon)
    # The profile the visitor was merged into holds the visitor's variant, reached through either id.
    assert stored(rapport, workspace, root) == "X"
    assert assign(rapport, workspace, anon, only("Y")).variant == "X"
    assert assign(rapport, workspace, user, only("Y")).variant == "X"
    assert rows(rapport, workspace) == [(anon, root, None, "X")]

    unmerge(client, workspace, merge)
    assert stored(rapport, workspace, anon) == "X"
    assert stored(rapport, workspace, user) == "-"
    assert assign(rapport, workspace, user, only("Y")).variant == "Y"


def test_the_winner_keeps_its_own_variant_and_an_unmerge_gives_the_loser_back_its_own(
        rapport: Rapport, client: ApiClient, workspace: NewWorkspace) -> None:
    anon, user = two_people(client, workspace)
    mine = {anon: "X", user: "Y"}
    for pid, variant in mine.items():
        assert assign(rapport, workspace, pid, only(variant)).variant == variant

    merge = join(client, workspace)
    winner, loser = merge["winner"], merge["loser"]
    assert (winner, loser) == (user, anon)
    assert stored(rapport, workspace, winner) == mine[winner]
    assert assign(rapport, workspace, loser, only("Z")).variant == mine[winner]
    assert rows(rapport, workspace) == sorted([(winner, winner, None, mine[winner]),
                                               (loser, None, winner, mine[loser])])

    unmerge(client, workspace, merge)
    for pid, variant in mine.items():
        assert stored(rapport, workspace, pid) == variant
        assert assign(rapport, workspace, pid, only("Z")).variant == variant
    assert rows(rapport, workspace) == sorted([(anon, anon, None, "X"), (user, user, None, "Y")])


def test_an_unmerge_leaves_assignments_shadowed_inside_the_loser_side_where_they_are(
        rapport: Rapport, workspace: NewWorkspace) -> None:
    """A merges into B (B keeps Y), then B into C (C keeps Z): undoing B→C gives B its Y, and A's X stays behind
    B's Y, as it was before B was merged."""
    ws = workspace.workspace_id

    def setup(conn: Conn) -> None:
        for pid, variant in (("pa", "X"), ("pb", "Y"), ("pc", "Z")):
            identity_sql.insert_profile(conn, ws, pid, b"key", NOW)
            sticky.assignment(conn, ws, EXPERIMENT, SALT, pid, only(variant), now=NOW)
        identity_sql.merge(conn, ws, "m-ab", "pb", "pa", [], None, "test", NOW)
        identity_sql.merge(conn, ws, "m-bc", "pc", "pb", [], None, "test", NOW)

    rapport.db.write(setup)
    assert stored(rapport, workspace, "pc") == "Z"
    assert rows(rapport, workspace) == [("pa", None, "pb", "X"), ("pb", None, "pc", "Y"), ("pc", "pc", None, "Z")]

    rapport.db.write(lambda conn: identity_sql.split(conn, ws, "m-bc", "pc", "pb", NOW))
    assert (stored(rapport, workspace, "pb"), stored(rapport, workspace, "pc")) == ("Y", "Z")
    assert rows(rapport, workspace) == [("pa", None, "pb", "X"), ("pb", "pb", None, "Y"), ("pc", "pc", None, "Z")]

    rapport.db.write(lambda conn: identity_sql.split(conn, ws, "m-ab", "pb", "pa", NOW))
    assert [stored(rapport, workspace, p) for p in ("pa", "pb", "pc")] == ["X", "Y", "Z"]


def test_erasure_deletes_the_person_s_assignments_shadowed_ones_too(rapport: Rapport, client: ApiClient,
                                                                     workspace: NewWorkspace) -> None:
    anon, user = two_people(client, workspace)
    for pid, variant in ((anon, "X"), (user, "Y")):
        assign(rapport, workspace, pid, only(variant))
    identify(client, workspace, anonymousId="anon-2")
    bystander = profile_of(client, workspace, anonymous_id="anon-2")["id"]
    assign(rapport, workspace, bystander, only("B"))
    merge = join(client, workspace)

    response = admin(client, workspace, "DELETE", f"/api/v1/profiles/{merge['loser']}")
    assert response.status_code == 200, response.text
    assert response.json()["erased"]
    assert rows(rapport, workspace) == [(bystander, bystander, None, "B")]
