"""Erasing a person: the one deliberate destruction, reaching every copy of their data (DESIGN 3.6).

A person is a live profile and every profile merged into it. Erasure runs in one write transaction: it reads
the person's identifier values (decrypting the sealed ones while their keys still exist), deletes or strips
every row that names the profiles (``rapport.storage.sql.erasure`` lists what stays and why), drops their
quarantined messages, replaces their ids and identifier values in the audit log, and records the erasure
there. Deleting the profiles' wrapped data keys shreds whatever was sealed under them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from rapport.channels.feedback import address_hash
from rapport.errors import NotFoundError
from rapport.identity.normalize import identifiers_from_event
from rapport.identity.service import PERSONAL_TYPES
from rapport.ingestion.quarantine import open_payload
from rapport.privacy.crypto import Cipher, CryptoError
from rapport.storage.base import Conn
from rapport.storage.sql import erasure as erasure_sql
from rapport.storage.sql import identity as identity_sql
from rapport.storage.sql import workspaces as ws_sql
from rapport.types import Json, Millis, WorkspaceId
from rapport.workspaces.keys import Keyring

ERASED = erasure_sql.ERASED
QUARANTINE_PAGE = 500


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure did: the live profile named, every profile erased with it, rows touched per table."""

    profile_id: str
    profiles: tuple[str, ...]
    rows: Mapping[str, int]

    def to_json(self) -> dict[str, Json]:
        return {"profile_id": self.profile_id, "profiles": list(self.profiles), "rows": dict(self.rows)}


def erase(conn: Conn, ws: WorkspaceId, wrapped_ws: bytes, keyring: Keyring, profile_id: str, actor: str,
          now: Millis) -> Erasure:
    """Erase the person holding ``profile_id`` (a live or merged profile id); raises ``NotFoundError`` when no
    profile of the workspace has that id (an erased one included)."""
    root = identity_sql.live_root(conn, ws, profile_id)
    if root is None:
        raise NotFoundError(f"no profile {profile_id[:80]!r} in this workspace", code="profile_not_found")
    members = identity_sql.subtree(conn, ws, root)
    values = identifier_values(conn, ws, wrapped_ws, keyring, members)
    rows = erasure_sql.erase_rows(conn, ws, members)
    dropped = drop_quarantined(conn, ws, keyring.workspace_cipher(ws, wrapped_ws), values)
    if dropped:
        rows["quarantine"] = dropped
    hashes = {address_hash(keyring, ws, wrapped_ws, v) for kind, v in values if kind == "email"}
    scrubbed = scrub_audit(conn, ws, [*members, *sorted({v for _, v in values} | hashes)])
    if scrubbed:
        rows["audit_log"] = scrubbed
    for member in members:
        keyring.forget_profile(ws, member)
    # The erasure's own record names the person's live profile id: an opaque id that, once everything about it
    # is gone, identifies nobody, and lets the requester check that the request was done.
    ws_sql.audit(conn, ws, actor, "profile.erase", root, {"profiles": len(members), "rows": rows}, now)
    return Erasure(root, tuple(members), rows)


def identifier_values(conn: Conn, ws: WorkspaceId, wrapped_ws: bytes, keyring: Keyring,
                      members: Sequence[str]) -> set[tuple[str, str]]:
    """The (type, normalized value) of every identifier the profiles hold, personal ones decrypted."""
    profiles = identity_sql.profile_rows(conn, ws, members)
    out: set[tuple[str, str]] = set()
    for member in members:
        for kind, key, enc, origin, _first in identity_sql.identifiers_of(conn, ws, member):
            if kind not in PERSONAL_TYPES:
                out.add((str(kind), str(key)))
                continue
            owner = profiles.get(str(origin)) or identity_sql.profile_rows(conn, ws, [str(origin)]).get(str(origin))
            if enc is None or owner is None:
                continue
            cipher = keyring.profile_cipher(ws, wrapped_ws, str(origin), bytes(owner[3]))
            try:
                out.add((str(kind), cipher.decrypt(bytes(enc), str(kind).encode()).decode()))
            except CryptoError:
                continue
    return out


def drop_quarantined(conn: Conn, ws: WorkspaceId, cipher: Cipher, values: set[tuple[str, str]]) -> int:
    """Delete the quarantined messages that carry one of the person's identifiers; how many went."""
    if not values:
        return 0
    doomed: list[int] = []
    after = 0
    while True:
        page = erasure_sql.quarantined(conn, ws, after, QUARANTINE_PAGE)
        for seq, payload in page:
            try:
                body = open_payload(cipher, ws, bytes(payload))
                found = {(i.type, i.value) for i in identifiers_from_event(body)}
            except (CryptoError, ValueError, TypeError):
                continue
            if found & values:
                doomed.append(int(seq))
        if len(page) < QUARANTINE_PAGE:
            break
        after = int(page[-1][0])
    return erasure_sql.delete_quarantined(conn, ws, doomed)


def scrub_audit(conn: Conn, ws: WorkspaceId, needles: Sequence[str]) -> int:
    """Replace every text in audit records (target, keys and values of the detail) equal to a needle (profile
    ids, identifier values, address hashes) by ``ERASED``; how many records changed.

    Whole texts only: a short user id must not eat into other people's records that happen to contain it."""
    changed: set[int] = set()
    wanted = frozenset(n for n in needles if n)
    for needle in sorted(wanted):
        for seq, target, detail in erasure_sql.audit_records(conn, ws, needle):
            old = orjson.loads(detail)
            new_target, new = _scrub(str(target), wanted), _scrub(old, wanted)
            if new_target != target or new != old:
                erasure_sql.rewrite_audit(conn, ws, int(seq), str(new_target), orjson.dumps(new).decode())
                changed.add(int(seq))
    return len(changed)


def _scrub(value: Any, needles: frozenset[str]) -> Any:
    if isinstance(value, str):
        return ERASED if value in needles else value
    if isinstance(value, list):
        return [_scrub(v, needles) for v in value]
    if isinstance(value, dict):
        return {_scrub(k, needles): _scrub(v, needles) for k, v in value.items()}
    return value
