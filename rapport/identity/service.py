"""The identity shell: resolves each message against the stored graph and applies the outcome.

Used inside the ingestion writer job. Identifiers of personal types (email, phone) are stored as
keyed hashes (blind indexes) for lookup, with the value encrypted under the profile's data key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rapport.clock import Clock
from rapport.identity.model import Identifier, ProfileRef, Resolution
from rapport.identity.normalize import identifiers_from_event
from rapport.identity.resolve import resolve
from rapport.ingestion.model import Message
from rapport.privacy.crypto import Cipher
from rapport.storage.base import Conn
from rapport.storage.sql import identity as identity_sql
from rapport.types import ProfileId
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import WorkspaceRuntime

PERSONAL_TYPES = frozenset({"email", "phone"})
_NEWEST = 2**62


class IdentityWriter:
    """Identity resolution for one batch, with the batch's lookups cached."""

    def __init__(self, conn: Conn, rt: WorkspaceRuntime, keyring: Keyring, clock: Clock) -> None:
        self.conn, self.rt, self.keyring, self.clock = conn, rt, keyring, clock
        self.owners: dict[tuple[str, str], str] = {}
        self.refs: dict[str, ProfileRef] = {}
        self.ciphers: dict[str, Cipher] = {}
        self._fetched: set[tuple[str, str]] = set()
        self._raw: dict[tuple[str, str], str] = {}

    def key_of(self, ident: Identifier) -> tuple[str, str]:
        """The stored (type, value_key) of a normalized identifier."""
        if ident.type in PERSONAL_TYPES:
            key = (ident.type, self.keyring.blind_index(self.rt.id, self.rt.wrapped_key, ident.type, ident.value))
            self._raw[key] = ident.value
            return key
        return (ident.type, ident.value)

    def identifiers(self, message: Message) -> list[tuple[str, str]]:
        keys = [self.key_of(i) for i in identifiers_from_event(message.body)]
        if message.previous_id is not None:
            keys.append(("user_id", message.previous_id))
            keys.append(("anonymous_id", message.previous_id))
        return keys

    def prefetch(self, messages: Sequence[Message]) -> None:
        keys = list(dict.fromkeys(k for m in messages for k in self.identifiers(m)))
        self._fetch(keys)

    def _fetch(self, keys: Sequence[tuple[str, str]]) -> None:
        missing = [k for k in keys if k not in self._fetched]
        if not missing:
            return
        self._fetched.update(missing)
        self.owners.update(identity_sql.owners(self.conn, self.rt.id, missing))

    def _ref(self, profile_id: str) -> ProfileRef:
        ref = self.refs.get(profile_id)
        if ref is None:
            row = identity_sql.profile_rows(self.conn, self.rt.id, [profile_id])[profile_id]
            idents = frozenset(Identifier(t, k) for t, k, *_ in identity_sql.identifiers_of(
                self.conn, self.rt.id, profile_id))
            ref = self.refs[profile_id] = ProfileRef(profile_id, int(row[0]), idents)
            self._remember_cipher(profile_id, bytes(row[3]))
        return ref

    def _remember_cipher(self, profile_id: str, wrapped: bytes) -> None:
        if profile_id not in self.ciphers:
            self.ciphers[profile_id] = self.keyring.profile_cipher(self.rt.id, self.rt.wrapped_key, profile_id, wrapped)

    def cipher(self, profile_id: str) -> Cipher:
        hit = self.ciphers.get(profile_id)
        if hit is None:
            self._ref(profile_id)
            hit = self.ciphers[profile_id]
        return hit

    def resolve(self, message: Message, before_merge: Callable[[], None] | None = None) -> tuple[str, bool]:
        """The profile ``message`` belongs to after applying its identity effects; and whether it merged.

        ``before_merge`` runs before a merge is applied, so a caller can write state it still holds
        for the profiles about to merge (the merge then moves it with the rest).
        """
        keys = self.identifiers(message)
        self._fetch(keys)
        if message.previous_id is not None:
            # Alias: previousId is whichever of user id / anonymous id is known, else an anonymous id.
            as_user = ("user_id", message.previous_id)
            drop = ("anonymous_id", message.previous_id) if as_user in self.owners else as_user
            keys = [k for k in keys if k != drop]
        idents = [Identifier(t, k) for t, k in keys]
        owners = {i: self._ref(self.owners[(i.type, i.value)]) for i in idents if (i.type, i.value) in self.owners}
        distinct = sorted({r.id for r in owners.values()})
        blocked: frozenset[frozenset[str]] = frozenset()
        if len(distinct) > 1:
            blocked = frozenset(identity_sql.blocked_pairs(self.conn, self.rt.id, distinct))
        new_id = self.clock.new_id("prf")
        res = resolve(idents, owners, self.rt.identity_rules, blocked, ProfileRef(new_id, _NEWEST, frozenset()))
        if res.merges and before_merge is not None:
            before_merge()
        self._apply(res, message)
        return res.profile_id, bool(res.merges)

    def _apply(self, res: Resolution, message: Message) -> None:
        ws, now = self.rt.id, self.clock.now_ms()
        target = res.profile_id
        if res.created:
            cipher, wrapped = self.keyring.new_profile_key(ws, self.rt.wrapped_key, ProfileId(target))
            seq = identity_sql.insert_profile(self.conn, ws, target, wrapped, now)
            self.refs[target] = ProfileRef(target, seq, frozenset())
            self.ciphers[target] = cipher
        for merge in res.merges:
            loser_ref = self.refs.pop(merge.loser)
            identity_sql.merge(
                self.conn, ws, self.clock.new_id("mrg"), merge.winner, merge.loser,
                sorted((i.type, i.value) for i in loser_ref.identifiers), message.message_id,
                "alias" if message.type == "alias" else "shared_identifier", now,
            )
            winner = self._ref(merge.winner)
            self.refs[merge.winner] = ProfileRef(winner.id, winner.seq, winner.identifiers | loser_ref.identifiers)
            for ident in loser_ref.identifiers:
                self.owners[(ident.type, ident.value)] = merge.winner
        if res.attach:
            cipher = self.cipher(target)
            rows = []
            for ident in res.attach:
                key = (ident.type, ident.value)
                raw = self._raw.get(key)
                enc = cipher.encrypt(raw.encode(), ident.type.encode()) if raw is not None else None
                rows.append((ident.type, ident.value, enc, target, message.ts))
                self.owners[key] = target
            identity_sql.attach(self.conn, ws, rows)
            ref = self._ref(target)
            self.refs[target] = ProfileRef(ref.id, ref.seq, ref.identifiers | frozenset(res.attach))
        for conflict in res.conflicts:
            identity_sql.record_conflict(
                self.conn, ws, conflict.identifier.type, conflict.identifier.value, conflict.holder,
                conflict.target, conflict.reason, message.message_id, now,
            )
