"""The SQL identity service agrees with the in-memory reference graph, on SQLite and PostgreSQL.

Hypothesis draws a sequence of Segment messages (identify, track and alias carrying user ids,
anonymous ids, emails and phones) in batches, interleaved with unmerges of logged merges, under
one of a few identity rule sets. The messages go through ``Rapport.ingest`` (the real batch job
with its cached, batched ``IdentityWriter``) and unmerges through ``rapport.identity.unmerge``;
the same identifiers go to an ``IdentityGraph`` in the same order. After every step both sides
must hold the same profiles (identifiers and events), the same merge log, conflicts and blocks,
with the graph's profile ids mapped to the stored ones through the events that created them.

The graph is given identifiers in their stored form (emails and phones as blind indexes), so
both order identifiers of a type alike. A message carries at most one email and one phone: two
of one personal type are ordered by blind index, which differs between workspaces, so the outcome
(and the messages Hypothesis draws from it) would differ between runs of one example.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from api.support import NOW
from hypothesis import event, given, settings
from hypothesis import strategies as st

from rapport.clock import FrozenClock
from rapport.core import Rapport
from rapport.identity.graph import IdentityGraph
from rapport.identity.model import Identifier, IdentityRules
from rapport.identity.normalize import identifiers_from_event
from rapport.identity.service import PERSONAL_TYPES
from rapport.identity.unmerge import unmerge
from rapport.ingestion.model import Message
from rapport.ingestion.parse import parse_message
from rapport.storage.base import Conn
from rapport.storage.sql import workspaces as ws_sql
from rapport.types import WorkspaceId
from rapport.workspaces.model import WorkspaceSettings

if TYPE_CHECKING:
    from conftest import Backend

USER_IDS = ("u1", "u2")
ANONYMOUS_IDS = ("a1", "a2", "a3")
EMAILS = ("ada@example.com", "bob@example.com")
PHONES = ("+12015550123", "+442071838750")
RULES: dict[str, dict[str, Any]] = {
    "default": {},
    "limited": {"limits": {"user_id": 1, "email": 2, "phone": 1}},
    "unlimited": {"limits": {}},
}

user_ids, anonymous_ids = st.sampled_from(USER_IDS), st.sampled_from(ANONYMOUS_IDS)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """One raw Segment message (without its messageId), as an SDK would send it."""
    kind = draw(st.sampled_from(["identify", "track", "alias"]))
    if kind == "alias":
        body: dict[str, Any] = {"type": "alias", "userId": draw(user_ids),
                                "previousId": draw(st.sampled_from(USER_IDS + ANONYMOUS_IDS))}
        anonymous = draw(st.none() | anonymous_ids)
        if anonymous is not None:
            body["anonymousId"] = anonymous
        return body
    ids = draw(st.sampled_from(["user", "anonymous", "both", "both"]))
    body = {"type": kind}
    if ids != "anonymous":
        body["userId"] = draw(user_ids)
    if ids != "user":
        body["anonymousId"] = draw(anonymous_ids)
    traits = {k: v for k, v in (("email", draw(st.none() | st.sampled_from(EMAILS))),
                                ("phone", draw(st.none() | st.sampled_from(PHONES)))) if v is not None}
    if kind == "track":
        body["event"] = "Viewed"
        if traits:
            body["context"] = {"traits": traits}
    else:
        body["traits"] = traits
    return body


visits = st.one_of(st.builds(lambda a: {"type": "track", "event": "Viewed", "anonymousId": a}, anonymous_ids),
                   st.builds(lambda u: {"type": "identify", "userId": u}, user_ids))
"""A message with one identifier: a profile of its own, for later messages to join."""


@st.composite
def bridges(draw: st.DrawFn, blocks: list[list[Identifier]]) -> dict[str, Any]:
    """An identify carrying an identifier of each of a few profiles (raw ``blocks``), so it tends to merge."""
    chosen = draw(st.lists(st.sampled_from(blocks), min_size=2, max_size=3, unique_by=tuple))
    body: dict[str, Any] = {"type": "identify", "traits": {}}
    slots = {"user_id": ("userId",), "anonymous_id": ("anonymousId",), "phone": ("traits", "phone"),
             "email": ("traits", "email")}
    for block in chosen:
        identifier = draw(st.sampled_from(block))
        *path, name = slots[identifier.type]
        node = body
        for part in path:
            node = node[part]
        node.setdefault(name, identifier.value)  # a slot already filled keeps its first value
    if "userId" not in body and "anonymousId" not in body:
        body["anonymousId"] = draw(anonymous_ids)
    return body


@pytest.fixture(scope="module")
def service(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rapport]:
    """One ``Rapport`` for the module; every example works in a workspace of its own."""
    instance = Rapport(backend.settings(tmp_path_factory.mktemp("agree")),
                       clock=FrozenClock(NOW, seed=secrets.randbits(64)))
    try:
        yield instance
    finally:
        instance.close()


@dataclass
class Twins:
    """One workspace of the service and the reference graph fed the same messages and unmerges."""

    rapport: Rapport
    ws: WorkspaceId
    graph: IdentityGraph
    stored: dict[str, str] = field(default_factory=dict)
    """Graph profile id → stored profile id (from the events that created each profile)."""
    merge_ids: list[str] = field(default_factory=list)
    """Stored merge ids, in the order of the graph's merge log."""
    sent: int = 0
    raws: dict[Identifier, Identifier] = field(default_factory=dict)

    @classmethod
    def open(cls, rapport: Rapport, rules: dict[str, Any]) -> Twins:
        ws = rapport.create_workspace(f"agree-{secrets.token_hex(6)}").workspace_id
        settings = WorkspaceSettings.from_json({**WorkspaceSettings().to_json(), "identity": rules})
        rapport.db.write(lambda c: ws_sql.update_settings(c, ws, settings.to_json()))
        rapport.invalidate(ws)
        return cls(rapport, ws, IdentityGraph(IdentityRules.from_settings(rules)))

    def key(self, identifier: Identifier) -> Identifier:
        """The identifier as stored: personal types by their blind index."""
        if identifier.type not in PERSONAL_TYPES:
            return identifier
        rt = self.rapport.runtime(self.ws)
        key = Identifier(identifier.type,
                         self.rapport.keyring.blind_index(self.ws, rt.wrapped_key, identifier.type, identifier.value))
        self.raws[key] = identifier
        return key

    def raw(self, key: Identifier) -> Identifier:
        """The identifier as sent, from its stored form."""
        return self.raws.get(key, key)

    def carried(self, message: Message) -> list[Identifier]:
        """What the graph sees of a message; an alias's previousId is a known user id, else an anonymous id."""
        found = [self.key(i) for i in identifiers_from_event(message.body)]
        if message.previous_id is not None:
            as_user = Identifier("user_id", message.previous_id)
            known = self.graph.holder_of(as_user) is not None
            found.append(as_user if known else Identifier("anonymous_id", message.previous_id))
        return found

    def send(self, raws: list[dict[str, Any]]) -> None:
        batch = []
        for raw in raws:
            self.sent += 1
            batch.append(parse_message({**raw, "messageId": f"m{self.sent}"}, implied_type=None, received_at=NOW,
                                       batch_sent_at=None, batch_context=None, new_id=lambda: "unused"))
        result = self.rapport.ingest(self.ws, batch).result()
        assert result.accepted == len(batch)
        origins = dict(self.rapport.db.read(lambda c: c.all(
            "SELECT message_id, origin_profile_id FROM events WHERE workspace_id = ?", (self.ws,))))
        for message in batch:
            resolution = self.graph.observe(self.carried(message), message.message_id)
            expected = self.stored.setdefault(resolution.profile_id, origins[message.message_id])
            assert origins[message.message_id] == expected, "the event went to another profile"
        self.merge_ids = [row[0] for row in self.rapport.db.read(self._merge_rows)]

    def unmerge(self, pick: int) -> None:
        active = [n for n, m in enumerate(self.graph.merges()) if not m.undone]
        if not active:
            return
        position = active[pick % len(active)]
        root, loser = self.graph.unmerge(self.graph.merges()[position].id)
        rapport, rt = self.rapport, self.rapport.runtime(self.ws)
        stored = rapport.db.write(lambda c: unmerge(c, rt, rapport.keyring, rapport.clock, self.merge_ids[position],
                                                    "test"))
        assert stored == (self.stored[root], self.stored[loser])

    def _merge_rows(self, conn: Conn) -> list[tuple[Any, ...]]:
        return conn.all("SELECT id, winner, loser, identifiers, message_id, undone_at FROM merges"
                        " WHERE workspace_id = ? ORDER BY seq", (self.ws,))

    def check(self) -> None:
        """Both sides hold the same profiles, merge log, conflicts and blocks."""
        ws, graph, to_stored = self.ws, self.graph, self.stored

        def read(conn: Conn) -> dict[str, Any]:
            return {
                "identifiers": conn.all("SELECT type, value_key, profile_id FROM identifiers WHERE workspace_id = ?",
                                        (ws,)),
                "events": conn.all("SELECT message_id, profile_id FROM events WHERE workspace_id = ?", (ws,)),
                "live": [r[0] for r in conn.all(
                    "SELECT id FROM profiles WHERE workspace_id = ? AND merged_into IS NULL", (ws,))],
                "merges": self._merge_rows(conn),
                "conflicts": conn.all(
                    "SELECT message_id, identifier_type, identifier_key, holder, target, reason"
                    " FROM identity_conflicts WHERE workspace_id = ? ORDER BY seq", (ws,)),
                "blocks": conn.all("SELECT a, b FROM merge_blocks WHERE workspace_id = ?", (ws,)),
            }

        db = self.rapport.db.read(read)
        profiles: dict[str, tuple[set[Identifier], set[str]]] = {p: (set(), set()) for p in db["live"]}
        for kind, key, profile in db["identifiers"]:
            profiles[profile][0].add(Identifier(kind, key))
        for message_id, profile in db["events"]:
            profiles[profile][1].add(message_id)
        expected = {to_stored[p]: (set(graph.identifiers_of(p)), set()) for p in graph.live_profiles()}
        for message_id, _ in db["events"]:
            expected[to_stored[graph.profile_of_event(message_id)]][1].add(message_id)
        assert profiles == expected

        assert [(to_stored[m.winner], to_stored[m.loser], m.identifiers, m.event_id, m.undone)
                for m in graph.merges()] == [
            (winner, loser, frozenset(Identifier(t, k) for t, k in orjson.loads(idents)), message_id,
             undone_at is not None) for _id, winner, loser, idents, message_id, undone_at in db["merges"]]
        assert [(r.event_id, r.conflict.identifier, r.conflict.holder and to_stored[r.conflict.holder],
                 to_stored[r.conflict.target], r.conflict.reason) for r in graph.conflicts()] == [
            (message_id, Identifier(kind, key), holder, target, reason)
            for message_id, kind, key, holder, target, reason in db["conflicts"]]
        assert {frozenset(to_stored[p] for p in pair) for pair in graph.blocked()} == {
            frozenset(row) for row in db["blocks"]}


@settings(max_examples=60)
@given(st.sampled_from(sorted(RULES)), st.lists(visits, max_size=4), st.data())
def test_service_and_graph_agree(service: Rapport, rules: str, prelude: list[dict[str, Any]],
                                 data: st.DataObject) -> None:
    """Random batches (most of their messages bridging live profiles) and unmerges of logged merges."""
    twins = Twins.open(service, RULES[rules])
    if prelude:
        twins.send(prelude)
    for _ in range(data.draw(st.integers(3, 12), label="steps")):
        if data.draw(st.integers(0, 2), label="unmerge?") == 0:
            twins.unmerge(data.draw(st.integers(0, 20), label="merge"))
        else:
            blocks = sorted(sorted(twins.raw(i) for i in block) for block in twins.graph.partition())
            message = st.one_of(messages(), bridges(blocks), bridges(blocks)) if len(blocks) > 1 else messages()
            twins.send(data.draw(st.lists(message, min_size=1, max_size=3), label="batch"))
        twins.check()
    graph = twins.graph
    event(f"merges: {min(len(graph.merges()), 3)}")
    event(f"unmerges: {min(sum(m.undone for m in graph.merges()), 2)}")
    event(f"conflicts: {sorted({c.conflict.reason for c in graph.conflicts()})}")
