"""Segment fixtures: profiles a segment must or must not select, checked whenever it is applied.

A fixture names a profile as ``<identifier type>:<value>`` (``user_id:u1``, ``email:ada@example.com``)
or by profile id (``prf_...``; a merged-away id follows its merge to the live profile).
``check_fixtures`` evaluates the segment's rule for each one at one instant with the in-memory
engine (``segments.stored``) and, for a fixture on the wrong side, names the comparisons that put
it there (``rapport.rules.explain``).

Series the rule reads that storage does not hold complete yet (a computed trait applied in the same
batch, still to be backfilled) are folded from the fixture profile's stored events, as a backfill
would fold them, so a trait and a segment with fixtures can be applied together. ``in_segment``
reads membership as stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from rapport.errors import NotFoundError, ValidationError
from rapport.identity.normalize import normalize
from rapport.profiles.computed import Bucket
from rapport.profiles.recompute import allowed_purposes, fold_events
from rapport.profiles.sealing import SeriesSealer
from rapport.profiles.service import ProfileReader
from rapport.resources.fields import did_you_mean, quoted
from rapport.rules import And, Node, Not, Or
from rapport.rules.explain import explain
from rapport.segments.explain import masked
from rapport.segments.stored import StoredContext, load, needs
from rapport.storage.base import Conn
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import events as events_sql
from rapport.storage.sql import identity as identity_sql
from rapport.storage.sql import profiles as profiles_sql
from rapport.storage.sql.consent import ledger_entry
from rapport.types import JsonObject, Millis
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import CompiledSegment, WorkspaceRuntime

IDENTIFIER_TYPES: Final = ("user_id", "anonymous_id", "email", "phone", "device_id")
PROFILE_ID: Final = re.compile(r"prf_[0-9a-z]{1,60}")
MAX_REASONS: Final = 5
"""Deciding comparisons named per failing fixture; a longer list ends with how many were left out."""


@dataclass(frozen=True, slots=True)
class Reference:
    """A fixture's profile: an identifier (``id_type`` and its value as written) or a profile id."""

    id_type: str | None
    value: str


def parse_reference(text: str) -> Reference:
    """The profile ``text`` names; ``ValueError`` saying what is wrong with it otherwise."""
    if ":" not in text:
        if PROFILE_ID.fullmatch(text):
            return Reference(None, text)
        raise ValueError("it is neither '<identifier type>:<value>' nor a profile id 'prf_...'")
    id_type, _, value = text.partition(":")
    if id_type not in IDENTIFIER_TYPES:
        raise ValueError(f"unknown identifier type {id_type!r}{did_you_mean(id_type, IDENTIFIER_TYPES)}; "
                         f"expected one of {quoted(IDENTIFIER_TYPES)}")
    try:
        ident = normalize(id_type, value)
    except ValidationError as exc:
        raise ValueError(exc.message) from None
    if ident is None:
        hint = " (E.164 with its country code, e.g. '+4930123456')" if id_type == "phone" else ""
        raise ValueError(f"{value!r} is not a valid {id_type}{hint}")
    return Reference(id_type, value)


@dataclass(frozen=True, slots=True)
class FixtureFailure:
    """A fixture on the wrong side of its segment's rule, or naming no profile."""

    field: str
    """Where it is written, e.g. ``fixtures.match[1]``."""
    message: str
    expected: str


def check_fixtures(conn: Conn, rt: WorkspaceRuntime, segment: CompiledSegment, keyring: Keyring,
                   at: Millis) -> list[FixtureFailure]:
    """The fixtures of ``segment`` that its rule puts on the wrong side at ``at``, or that name no profile."""
    fixtures = segment.spec.get("fixtures")
    if segment.rule is None or not isinstance(fixtures, dict):
        return []
    rule = segment.rule
    reader = ProfileReader(conn, rt, keyring)
    wanted = needs(rule, rt)
    live = {str(r[0]) for r in profiles_sql.series_states(conn, rt.id) if r[2] == "live"}
    incomplete = sorted(s for s in wanted.series if s not in live and s in rt.series)
    failures: list[FixtureFailure] = []
    for should, key in ((True, "match"), (False, "no_match")):
        entries = fixtures.get(key)
        for index, text in enumerate(entries if isinstance(entries, list) else []):
            where = f"fixtures.{key}[{index}]"
            expected = f"a profile segment {segment.name!r} {'selects' if should else 'does not select'}"
            try:
                profile_id = resolve(reader, parse_reference(str(text)))
            except (NotFoundError, ValueError) as exc:
                problem = exc.message if isinstance(exc, NotFoundError) else str(exc)
                failures.append(FixtureFailure(where, f"fixture {text} of segment {segment.name!r}: {problem}",
                                               expected))
                continue
            data = load(conn, rt, wanted, [profile_id])[profile_id]
            if incomplete:
                data = data._replace(series={**data.series, **folded(conn, rt, keyring, profile_id, incomplete)})
            tree = masked(explain(rule, StoredContext(rt, data, at)))
            if tree["value"] is should:
                continue
            side = "match" if should else "not match"
            verdict = "does not" if should else "does"
            failures.append(FixtureFailure(
                where, f"fixture {text} should {side} segment {segment.name!r} but {verdict}: "
                + summary(reasons(rule, tree)), expected))
    return failures


def resolve(reader: ProfileReader, ref: Reference) -> str:
    """The live profile ``ref`` names; ``NotFoundError`` when there is none."""
    if ref.id_type is None:
        return reader.live_id(ref.value)
    return reader.find(ref.id_type, ref.value)


def folded(conn: Conn, rt: WorkspaceRuntime, keyring: Keyring, profile_id: str,
           series: Sequence[str]) -> dict[str, tuple[Bucket, ...]]:
    """The buckets of ``series`` for one profile, folded from its stored events (nothing is written)."""
    ws = rt.id
    rows = events_sql.of_profile(conn, ws, profile_id)
    ledger = [ledger_entry(r) for r in consent_sql.entries(conn, ws, [profile_id])]
    wrapped = identity_sql.profile_rows(conn, ws, sorted({str(r[3]) for r in rows}))

    def decrypt(origin: str) -> Callable[..., bytes]:
        return keyring.profile_cipher(ws, rt.wrapped_key, origin, bytes(wrapped[origin][3])).decrypt

    def allowed(_profile: str, ts: int) -> set[str]:
        return allowed_purposes(rt, ledger, ts)

    buckets = fold_events(rows, {sid: rt.series[sid] for sid in series}, decrypt, allowed, SeriesSealer(keyring, rt))
    out: dict[str, list[Bucket]] = {sid: [] for sid in series}
    for (_profile, sid, _second), bucket in sorted(buckets.items(), key=lambda item: item[0]):
        out[sid].append(bucket)
    return {sid: tuple(found) for sid, found in out.items()}


def reasons(node: Node, tree: JsonObject) -> list[str]:
    """The leaf comparisons that gave ``node`` its value in ``tree`` (``explain(node, ...)``, whose
    reasons already read through ``not``): for an ``and`` that failed its failing parts, for one that
    held all of them; the reverse for ``or``."""
    children = tree.get("children")
    if isinstance(node, Not) and isinstance(children, list):
        return reasons(node.item, children[0])
    if isinstance(node, And | Or) and isinstance(children, list):
        out: list[str] = []
        for item, child in zip(node.items, children, strict=True):
            if child["value"] == tree["value"]:
                out += reasons(item, child)
        return out
    return [_leaf_reason(tree)]


def _leaf_reason(tree: JsonObject) -> str:
    return str(tree.get("reason") or tree["rule"])


def summary(found: Iterable[str]) -> str:
    """Reasons joined for one message, at most ``MAX_REASONS`` of them."""
    unique = list(dict.fromkeys(found))
    shown = "; ".join(unique[:MAX_REASONS])
    return shown + (f"; and {len(unique) - MAX_REASONS} more" if len(unique) > MAX_REASONS else "")
