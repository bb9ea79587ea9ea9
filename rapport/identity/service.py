"""The identity shell: resolves each message against the stored graph and applies the outcome.

Used inside the ingestion writer job. Identifiers of personal types (email, phone) are stored as
keyed hashes (blind indexes) for lookup, with the value encrypted under the profile's data key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rapport.channels.feedback import address_hash
from rapport.clock import Clock
from rapport.identity.model import Identifier, ProfileRef, Resolution
from rapport.identity.normalize import identifiers_from_event
from rapport.identity.resolve import resolve
from rapport.ingestion.model import Message
from rapport.privacy.crypto import Cipher
from rapport.storage.base import Conn
from rapport.storage.sql import erasure as erasure_sql
from rapport.storage.sql import identity as identity_sql
from rapport.types import ProfileId
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import WorkspaceRuntime

PERSONAL_TYPES = frozenset({"email", "phone"})
_NEWEST = 2**62
_PROVISIONAL = 2**61
"""Provisional ``seq`` of profiles created in the batch: above every stored one, below ``_NEWEST``."""


class IdentityWriter:
    """Identity resolution for one batch, with the batch's lookups cached and its inserts batched.

    New profiles and attached identifiers are buffered and written by ``flush`` (the job calls it
    before inserting its events); a merge flushes them first (and runs ``resolve``'s ``before_merge``,
    so the job can write what it buffered), because the merge moves the loser's stored rows. A profile
    created in the batch gets a provisional ``seq`` above every stored one, in creation order,
    which is the order its stored ``seq`` will have, so merge decisions are the same.
    """

    def __init__(self, conn: Conn, rt: WorkspaceRuntime, keyring: Keyring, clock: Clock) -> None:
        self.conn, self.rt, self.keyring, self.clock = conn, rt, keyring, clock
        self.owners: dict[tuple[str, str], str] = {}
        self.refs: dict[str, ProfileRef] = {}
        self.ciphers: dict[str, Cipher] = {}
        self.created: set[str] = set()
        self.losers: list[str] = []
        """Profiles merged into others by this writer, in order."""
        self.holders: list[str] = []
        self._fetched: set[tuple[str, str]] = set()
        self._raw: dict[tuple[str, str], str] = {}
        self._keys: dict[int, list[tuple[str, str]]] = {}
        self._blind: dict[tuple[str, str], str] = {}
        self._new_profiles: list[tuple[str, bytes, int]] = []
        self._attach: list[tuple[str, str, bytes | None, str, int]] = []
        self._adopt: list[tuple[str, str]] = []
        self._has_blocks: bool | None = None

    def key_of(self, ident: Identifier) -> tuple[str, str]:
        """The stored (type, value_key) of a normalized identifier."""
        if ident.type in PERSONAL_TYPES:
            raw = (ident.type, ident.value)
            index = self._blind.get(raw)
            if index is None:
                index = self._blind[raw] = self.keyring.blind_index(
                    self.rt.id, self.rt.wrapped_key, ident.type, ident.value)
            key = (ident.type, index)
            self._raw[key] = ident.value
            return key
        return (ident.type, ident.value)

    def identifiers(self, message: Message) -> list[tuple[str, str]]:
        """The stored keys of what ``message`` carries; an alias ends with both readings of its previousId."""
        hit = self._keys.get(id(message))
        if hit is not None:
            return hit
        found = message.identifiers if message.identifiers is not None else identifiers_from_event(message.body)
        keys = [self.key_of(i) for i in found]
        if message.previous_id is not None:
            keys.append(("user_id", message.previous_id))
            keys.append(("anonymous_id", message.previous_id))
        self._keys[id(message)] = keys
        return keys

    def prefetch(self, messages: Sequence[Message]) -> None:
        """Look up every identifier of the batch, and what is needed of the profiles holding them.

        ``holders`` becomes the profiles holding any of them. Every holder needs its cipher (from the
        keyring's cache, else from its stored data key); only the holders of messages that may
        attach, merge or conflict need their identifiers (``ProfileRef``), which are loaded in the
        same few queries. A message whose identifiers all belong to one profile needs neither.
        """
        keys = list(dict.fromkeys(k for m in messages for k in self.identifiers(m)))
        self._fetch(keys)
        self.holders = sorted(set(self.owners.values()))
        involved: set[str] = set()
        for message in messages:
            holders = {self.owners.get(k) for k in self.identifiers(message)}
            if len(holders) != 1 or None in holders or message.previous_id is not None:
                involved.update(h for h in holders if h is not None)
        for profile_id in self.holders:
            if profile_id not in self.ciphers:
                cached = self.keyring.cached_cipher(self.rt.id, profile_id)
                if cached is not None:
                    self.ciphers[profile_id] = cached
        wanted = sorted(p for p in self.holders
                        if p not in self.refs and (p in involved or p not in self.ciphers))
        if not wanted:
            return
        rows = identity_sql.profile_rows(self.conn, self.rt.id, wanted)
        for profile_id in wanted:
            self._remember_cipher(profile_id, bytes(rows[profile_id][3]))
        refs = sorted(p for p in wanted if p in involved)
        if not refs:
            return
        idents: dict[str, set[Identifier]] = {p: set() for p in refs}
        for profile_id, kind, key in identity_sql.identifiers_of_many(self.conn, self.rt.id, refs):
            idents[profile_id].add(Identifier(kind, key))
        for profile_id in refs:
            self.refs[profile_id] = ProfileRef(profile_id, int(rows[profile_id][0]), frozenset(idents[profile_id]))

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

        ``before_merge`` runs before a merge is applied (after this writer's own buffered rows are
        written), so a caller can write state it still holds for the profiles about to merge (the
        merge then moves it with the rest).
        """
        keys = self.identifiers(message)
        self._fetch(keys)
        if message.previous_id is not None:
            # Alias: previousId is whichever of user id / anonymous id is known, else an anonymous id.
            # Only the last two keys are its readings (the message may carry the same key itself).
            *keys, as_user, as_anonymous = keys
            keys.append(as_user if as_user in self.owners else as_anonymous)
        # Every identifier already held by one profile: ``resolve`` would decide exactly that profile
        # with nothing to attach, merge or refuse, so skip building its inputs.
        single = None
        for key in keys:
            holder = self.owners.get(key)
            if holder is None or (single is not None and holder != single):
                single = None
                break
            single = holder
        if single is not None:
            return single, False
        idents = [Identifier(t, k) for t, k in keys]
        owners = {i: self._ref(self.owners[(i.type, i.value)]) for i in idents if (i.type, i.value) in self.owners}
        distinct = sorted({r.id for r in owners.values()})
        blocked = (frozenset(identity_sql.blocked_pairs(self.conn, self.rt.id, distinct))
                   if len(distinct) > 1 and self._any_blocks() else frozenset())
        # The event starts a profile only when its leading identifier is new (or it carries none).
        new_id = "" if owners and len(owners) == len(set(idents)) else self.clock.new_id("prf")
        res = resolve(idents, owners, self.rt.identity_rules, blocked, ProfileRef(new_id, _NEWEST, frozenset()))
        if res.merges:
            self.flush()
            if before_merge is not None:
                before_merge()
        self._apply(res, message)
        return res.profile_id, bool(res.merges)

    def _any_blocks(self) -> bool:
        # Asked once per batch: blocks come only from unmerges, which never run inside a batch job.
        if self._has_blocks is None:
            self._has_blocks = identity_sql.has_blocks(self.conn, self.rt.id)
        return self._has_blocks

    def flush(self) -> None:
        """Write the buffered new profiles and attached identifiers."""
        if self._new_profiles:
            identity_sql.insert_profiles(self.conn, self.rt.id, self._new_profiles)
            self._new_profiles.clear()
        if self._attach:
            identity_sql.attach(self.conn, self.rt.id, self._attach)
            self._attach.clear()
        if self._adopt:
            # Suppressions naming nobody (an erased person's, feedback about an unknown address) keep stopping
            # mail to their address: the profile that gains it adopts them.
            erasure_sql.adopt_suppressions(self.conn, self.rt.id, self._adopt)
            self._adopt.clear()

    def _apply(self, res: Resolution, message: Message) -> None:
        ws, now = self.rt.id, self.clock.now_ms()
        target = res.profile_id
        if res.created:
            cipher, wrapped = self.keyring.new_profile_key(ws, self.rt.wrapped_key, ProfileId(target))
            self._new_profiles.append((target, wrapped, now))
            self.refs[target] = ProfileRef(target, _PROVISIONAL + len(self.created), frozenset())
            self.created.add(target)
            self.ciphers[target] = cipher
        for merge in res.merges:
            self.losers.append(merge.loser)
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
            for ident in res.attach:
                key = (ident.type, ident.value)
                raw = self._raw.get(key)
                enc = cipher.encrypt(raw.encode(), ident.type.encode()) if raw is not None else None
                self._attach.append((ident.type, ident.value, enc, target, message.ts))
                if ident.type == "email" and raw is not None:
                    hashed = address_hash(self.keyring, ws, self.rt.wrapped_key, raw)
                    self._adopt.append((hashed, target))
                self.owners[key] = target
            ref = self._ref(target)
            self.refs[target] = ProfileRef(ref.id, ref.seq, ref.identifiers | frozenset(res.attach))
        for conflict in res.conflicts:
            identity_sql.record_conflict(
                self.conn, ws, conflict.identifier.type, conflict.identifier.value, conflict.holder,
                conflict.target, conflict.reason, message.message_id, now,
            )
