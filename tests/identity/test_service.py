"""The SQL identity service on edge cases of Segment messages, through ``Rapport.ingest``."""

from __future__ import annotations

from typing import Any

from api.support import NOW

from rapport.core import NewWorkspace, Rapport
from rapport.ingestion.parse import parse_message


def ingest(rapport: Rapport, ws: NewWorkspace, *raws: dict[str, Any]) -> dict[str, str]:
    """Ingest ``raws`` as one batch; returns each message's profile."""
    batch = [parse_message(raw, implied_type=None, received_at=NOW, batch_sent_at=None, batch_context=None,
                           new_id=lambda: "unused") for raw in raws]
    assert rapport.ingest(ws.workspace_id, batch).result().accepted == len(batch)
    return dict(rapport.db.read(lambda c: c.all(
        "SELECT message_id, profile_id FROM events WHERE workspace_id = ?", (ws.workspace_id,))))


def identifiers(rapport: Rapport, ws: NewWorkspace, profile_id: str) -> set[tuple[str, str]]:
    rows = rapport.db.read(lambda c: c.all(
        "SELECT type, value_key FROM identifiers WHERE workspace_id = ? AND profile_id = ?",
        (ws.workspace_id, profile_id)))
    return {(kind, key) for kind, key in rows}


def test_alias_whose_previous_id_is_its_own_user_id_keeps_the_user_id(rapport: Rapport, workspace: NewWorkspace
                                                                      ) -> None:
    profiles = ingest(rapport, workspace, {"type": "alias", "userId": "u1", "previousId": "u1", "messageId": "m1"})
    assert identifiers(rapport, workspace, profiles["m1"]) == {("user_id", "u1"), ("anonymous_id", "u1")}


def test_events_without_a_usable_identifier_get_profiles_of_their_own(rapport: Rapport, workspace: NewWorkspace
                                                                      ) -> None:
    # 1.5 is a valid Segment userId but no identifier (only whole numbers are): nothing to match on.
    profiles = ingest(rapport, workspace,
                      {"type": "track", "userId": 1.5, "event": "Viewed", "messageId": "m1"},
                      {"type": "track", "userId": 1.5, "event": "Viewed", "messageId": "m2"})
    assert profiles["m1"].startswith("prf_") and profiles["m2"].startswith("prf_")
    assert profiles["m1"] != profiles["m2"]


def test_new_user_id_in_a_batch_with_the_other_users_anonymous_id(rapport: Rapport, workspace: NewWorkspace
                                                                  ) -> None:
    profiles = ingest(rapport, workspace,
                      {"type": "identify", "userId": "u1", "anonymousId": "shared", "messageId": "m1"},
                      {"type": "track", "userId": "u2", "anonymousId": "shared", "event": "Viewed", "messageId": "m2"},
                      {"type": "track", "userId": "u2", "event": "Viewed", "messageId": "m3"})
    assert profiles["m1"] != profiles["m2"] == profiles["m3"]
    assert identifiers(rapport, workspace, profiles["m1"]) == {("user_id", "u1"), ("anonymous_id", "shared")}
    assert identifiers(rapport, workspace, profiles["m2"]) == {("user_id", "u2")}
    conflicts = rapport.db.read(lambda c: c.all(
        "SELECT identifier_type, identifier_key, holder, target, reason, message_id FROM identity_conflicts"
        " WHERE workspace_id = ?", (workspace.workspace_id,)))
    assert conflicts == [("anonymous_id", "shared", profiles["m1"], profiles["m2"], "limit", "m2")]
