"""Unmerge: split a profile back along a logged merge and recompute both sides from their events."""

from __future__ import annotations

from rapport.clock import Clock
from rapport.errors import ConflictError, NotFoundError
from rapport.profiles.recompute import allowed_purposes, fold_events, trait_rows, write_buckets
from rapport.profiles.sealing import SeriesSealer
from rapport.segments.service import MembershipWriter, Touched
from rapport.storage.base import Conn
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import events as events_sql
from rapport.storage.sql import identity as identity_sql
from rapport.storage.sql import profiles as profiles_sql
from rapport.storage.sql import workspaces as ws_sql
from rapport.storage.sql.consent import ledger_entry
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import WorkspaceRuntime


def recompute_profile(conn: Conn, rt: WorkspaceRuntime, keyring: Keyring, profile_id: str) -> None:
    """Rebuild a live profile's traits and buckets from its events."""
    ws = rt.id
    profiles_sql.delete_derived(conn, ws, profile_id)
    rows = events_sql.of_profile(conn, ws, profile_id)
    profiles_sql.upsert_traits(conn, trait_rows(ws, profile_id, rows))
    profiles_sql.refresh_trait_values(conn, ws, [profile_id])
    ledger = [ledger_entry(r) for r in consent_sql.entries(conn, ws, [profile_id])]
    wrapped = identity_sql.profile_rows(conn, ws, sorted({str(r[3]) for r in rows}))

    def decrypt(origin: str):  # type: ignore[no-untyped-def]
        return keyring.profile_cipher(ws, rt.wrapped_key, origin, bytes(wrapped[origin][3])).decrypt

    def allowed(_p: str, ts: int) -> set[str]:
        return allowed_purposes(rt, ledger, ts)

    # A live series holds every event; one being backfilled holds those up to its progress.
    sealer = SeriesSealer(keyring, rt)
    states = [r for r in profiles_sql.series_states(conn, ws) if r[0] in rt.series]
    live = {r[0]: rt.series[r[0]] for r in states if r[2] == "live"}
    write_buckets(conn, ws, fold_events(rows, live, decrypt, allowed, sealer))
    for sid, _d, state, _w, _t, done in states:
        if state != "live":
            upto = [r for r in rows if int(r[0]) <= int(done)]
            write_buckets(conn, ws, fold_events(upto, {sid: rt.series[sid]}, decrypt, allowed, sealer))


def unmerge(conn: Conn, rt: WorkspaceRuntime, keyring: Keyring, clock: Clock, merge_id: str, actor: str
            ) -> tuple[str, str]:
    """Undo merge ``merge_id``; returns (the profile the winner side lives in, the restored loser)."""
    ws = rt.id
    row = identity_sql.merge_row(conn, ws, merge_id)
    if row is None:
        raise NotFoundError(f"no merge {merge_id!r}", code="merge_not_found")
    _id, winner, loser, *_rest, undone_at = row
    if undone_at is not None:
        raise ConflictError(f"merge {merge_id!r} was already undone", code="already_unmerged")
    root = identity_sql.live_root(conn, ws, winner)
    if root is None:
        raise NotFoundError(f"the merged profile of {merge_id!r} no longer exists", code="profile_not_found")
    now = clock.now_ms()
    identity_sql.split(conn, ws, merge_id, root, loser, now)
    for profile in (root, loser):
        recompute_profile(conn, rt, keyring, profile)
    MembershipWriter(conn, rt, clock).update({root: Touched(structural=True), loser: Touched(structural=True)}, now)
    ws_sql.audit(conn, ws, actor, "identity.unmerge", merge_id, {"winner": root, "loser": loser}, now)
    return root, loser
