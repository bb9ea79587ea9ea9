"""Reading unified profiles: lookup by identifier, traits, computed values, consent, timeline."""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson

from rapport.clock import to_iso
from rapport.consent.decide import current_state
from rapport.errors import NotFoundError, ValidationError
from rapport.identity.normalize import normalize
from rapport.identity.service import PERSONAL_TYPES
from rapport.privacy import pii
from rapport.privacy.crypto import Cipher
from rapport.profiles.computed import Bucket, evaluate_all
from rapport.profiles.sealing import SeriesSealer
from rapport.storage.base import Conn, Row
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import events as events_sql
from rapport.storage.sql import identity as identity_sql
from rapport.storage.sql import profiles as profiles_sql
from rapport.storage.sql import segments as segments_sql
from rapport.storage.sql.consent import ledger_entry
from rapport.types import JsonObject, Millis
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import WorkspaceRuntime


class ProfileReader:
    """Decrypting reads of one workspace's profiles on one connection."""

    def __init__(self, conn: Conn, rt: WorkspaceRuntime, keyring: Keyring) -> None:
        self.conn, self.rt, self.keyring = conn, rt, keyring
        self._ciphers: dict[str, Cipher] = {}

    def cipher(self, profile_id: str) -> Cipher:
        hit = self._ciphers.get(profile_id)
        if hit is None:
            row = identity_sql.profile_rows(self.conn, self.rt.id, [profile_id]).get(profile_id)
            if row is None:
                raise NotFoundError(f"no profile {profile_id!r}", code="profile_not_found")
            hit = self.keyring.profile_cipher(self.rt.id, self.rt.wrapped_key, profile_id, bytes(row[3]))
            self._ciphers[profile_id] = hit
        return hit

    def find(self, id_type: str, raw_value: str) -> str:
        """The live profile holding an identifier; ``NotFoundError`` when none does."""
        ident = normalize(id_type, raw_value)
        if ident is None:
            raise ValidationError(f"{raw_value!r} is not a valid {id_type}", code="invalid_identifier")
        key = ident.value
        if id_type in PERSONAL_TYPES:
            key = self.keyring.blind_index(self.rt.id, self.rt.wrapped_key, id_type, ident.value)
        owner = identity_sql.owners(self.conn, self.rt.id, [(id_type, key)]).get((id_type, key))
        if owner is None:
            raise NotFoundError(f"no profile has {id_type} {raw_value!r}", code="profile_not_found")
        return owner

    def live_id(self, profile_id: str) -> str:
        """A profile id, following merges to the live profile (old ids keep working)."""
        root = identity_sql.live_root(self.conn, self.rt.id, profile_id)
        if root is None:
            raise NotFoundError(f"no profile {profile_id!r}", code="profile_not_found")
        return root

    def identifiers(self, profile_id: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for id_type, key, enc, origin, _first in identity_sql.identifiers_of(self.conn, self.rt.id, profile_id):
            if enc is not None:
                out[id_type].append(self.cipher(origin).decrypt(bytes(enc), id_type.encode()).decode())
            else:
                out[id_type].append(key)
        return dict(out)

    def traits(self, profile_id: str, *, with_meta: bool = False) -> JsonObject:
        out: JsonObject = {}
        for name, value, key_profile, source, ts, message_id in profiles_sql.traits(self.conn, self.rt.id, profile_id):
            decoded = orjson.loads(value)
            if pii.is_marker(decoded):
                decoded = pii.decrypt_value(decoded, self.cipher(key_profile).decrypt)
            elif isinstance(decoded, dict | list):
                decoded = pii.decrypt_fields({"v": decoded}, self.cipher(key_profile).decrypt)["v"]
            out[name] = {"value": decoded, "source": source, "updated_at": to_iso(ts), "message_id": message_id} \
                if with_meta else decoded
        return out

    def computed(self, profile_id: str, at: Millis) -> JsonObject:
        series_ids = sorted({key.id for trait in self.rt.traits.values() for key in trait.all_series()})
        buckets: dict[str, list[Bucket]] = defaultdict(list)
        index: dict[tuple[str, int], Bucket] = {}
        for row in profiles_sql.buckets(self.conn, self.rt.id, profile_id, series_ids):
            b = bucket_from_row(row)
            buckets[row[0]].append(b)
            index[(row[0], b.bucket)] = b
        for series_id, bucket, value in profiles_sql.bucket_values(self.conn, self.rt.id, profile_id, series_ids):
            hit = index.get((series_id, int(bucket)))
            if hit is not None:
                hit.values.add(value)
        values = evaluate_all(self.rt.traits.values(), buckets, at)
        if any(s.personal for s in self.rt.series.values()):
            values = SeriesSealer(self.keyring, self.rt).open(self.rt.traits, values)
        return values

    def consent(self, profile_id: str, at: Millis) -> JsonObject:
        entries = [ledger_entry(r) for r in consent_sql.entries(self.conn, self.rt.id, [profile_id])]
        return {
            name: {"allowed": d.allowed, "reason": d.reason, "entry_id": d.entry.id if d.entry else None}
            for name, d in current_state(entries, self.rt.catalog, at).items()
        }

    def consent_history(self, profile_id: str) -> list[JsonObject]:
        return [ledger_json(r) for r in consent_sql.entries(self.conn, self.rt.id, [profile_id])]

    def view(self, profile_id: str, at: Millis) -> JsonObject:
        row = identity_sql.profile_rows(self.conn, self.rt.id, [profile_id])[profile_id]
        return {
            "id": profile_id,
            "created_at": to_iso(int(row[4])),
            "identifiers": self.identifiers(profile_id),
            "traits": self.traits(profile_id),
            "computed": self.computed(profile_id, at),
            "consent": self.consent(profile_id, at),
            "segments": sorted(str(r[1]) for r in segments_sql.current(self.conn, self.rt.id, [profile_id])),
        }

    def event_json(self, row: Row) -> JsonObject:
        (seq, message_id, profile_id, origin, kind, name, _user, _anon, ts, received, restricted, flagged, body) = row
        decoded = pii.decrypt_fields(orjson.loads(body), self.cipher(origin).decrypt)
        return {"seq": seq, "message_id": message_id, "type": kind, "name": name, "timestamp": to_iso(ts),
                "received_at": to_iso(received), "restricted": bool(restricted), "flagged": bool(flagged),
                "profile_id": profile_id, "message": decoded}

    def timeline(self, profile_id: str, cursor: str | None, limit: int) -> JsonObject:
        before = decode_cursor(cursor) if cursor else None
        rows = events_sql.timeline(self.conn, self.rt.id, profile_id, before, limit + 1)
        page = rows[:limit]
        nxt = encode_cursor(int(page[-1][8]), int(page[-1][0])) if len(rows) > limit else None
        return {"events": [self.event_json(r) for r in page], "next": nxt}


def bucket_from_row(row: Sequence[Any]) -> Bucket:
    (_series, bucket, n, nn, total, vmin, vmax, first_ts, first_seq, first_val, last_ts, last_seq, last_val) = row
    return Bucket(int(bucket), int(n), int(nn), float(total), vmin, vmax, int(first_ts), int(first_seq), first_val,
                  int(last_ts), int(last_seq), last_val)


def ledger_json(row: Sequence[Any]) -> JsonObject:
    e = ledger_entry(row)
    return {"id": e.id, "purpose": e.purpose, "state": e.state, "legal_basis": e.legal_basis, "source": e.source,
            "policy_version": e.policy_version, "proof": e.proof, "recorded_at": to_iso(e.recorded_at),
            "effective_at": to_iso(e.effective_at),
            "expires_at": None if e.expires_at is None else to_iso(e.expires_at)}


def encode_cursor(ts: int, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{ts}:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        ts, seq = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(":")
        return int(ts), int(seq)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError(f"invalid cursor {cursor!r}", code="invalid_cursor") from None
