"""Recomputing a profile's derived state (traits, computed-trait buckets) from its stored events.

Used after an unmerge and by backfills; it folds events through the same code as live ingestion,
so incremental and from-scratch results agree by construction and by test.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import orjson

from rapport.consent.decide import may_use
from rapport.consent.model import LedgerEntry
from rapport.ingestion.service import bucket_row
from rapport.privacy import pii
from rapport.profiles.computed import Bucket, bucket_of, property_value
from rapport.profiles.sealing import SeriesSealer
from rapport.rules import evaluate_where
from rapport.segments.service import INTERNAL_PREFIX
from rapport.storage.base import Conn, Row
from rapport.storage.sql import profiles as profiles_sql
from rapport.workspaces.runtime import CompiledSeries, WorkspaceRuntime


def feeds(series: CompiledSeries, kind: str, name: str | None, properties: Mapping[str, object], ts: int,
          allowed: Iterable[str]) -> bool:
    """Whether an event feeds a series (event match, consent for the series' purposes, where rule)."""
    key = series.key
    if key.event != "*" and (kind != "track" or key.event != name):
        return False
    if "necessary" not in series.purposes and not series.purposes <= set(allowed):
        return False
    return series.where is None or evaluate_where(series.where, properties, ts)


def fold_events(
    rows: Sequence[Row], series: Mapping[str, CompiledSeries], decrypt: object, allowed_at: object,
    sealer: SeriesSealer,
) -> dict[tuple[str, str, int], Bucket]:
    """Buckets of ``series`` from event rows (as ``events.EVENT_COLUMNS``), keyed (profile, series, bucket).

    ``decrypt(origin_profile_id)`` gives a decrypt function; ``allowed_at(profile_id, ts)`` the
    purposes consented at that instant.
    """
    out: dict[tuple[str, str, int], Bucket] = {}
    for row in rows:
        seq, mid, profile_id, origin, kind, name, _u, _a, ts, _r, _restricted, _f, body = row
        if str(mid).startswith(INTERNAL_PREFIX):
            continue  # written by Rapport (segment changes): feeds no computed trait, live or here
        message = pii.decrypt_fields(orjson.loads(body), decrypt(origin))  # type: ignore[operator]
        props = message.get("properties")
        properties = props if isinstance(props, dict) else {}
        allowed = allowed_at(profile_id, ts)  # type: ignore[operator]
        for series_id, s in series.items():
            if not feeds(s, kind, name, properties, ts, allowed):
                continue
            found, value = property_value(properties, s.key.prop) if s.key.prop else (False, None)
            slot = (profile_id, series_id, bucket_of(ts))
            bucket = out.get(slot)
            if bucket is None:
                bucket = out[slot] = Bucket(slot[2])
            sealed = sealer.seal(s, value) if found and s.personal else None
            bucket.add(ts, int(seq), value if found else None, s.key.prop is not None, sealed)
    return out


def write_buckets(conn: Conn, ws: str, buckets: Mapping[tuple[str, str, int], Bucket]) -> None:
    profiles_sql.upsert_buckets(conn, [bucket_row(ws, p, s, b) for (p, s, _), b in buckets.items()])
    profiles_sql.insert_bucket_values(conn, [(ws, p, s, b.bucket, v) for (p, s, _), b in buckets.items()
                                             for v in b.values])


def trait_rows(ws: str, profile_id: str, rows: Sequence[Row]) -> list[tuple[object, ...]]:
    """Trait rows from identify events, newest event time winning (ties: later arrival)."""
    latest: dict[str, tuple[object, ...]] = {}
    for row in sorted(rows, key=lambda r: (r[8], r[0])):
        _seq, mid, _p, origin, kind, _n, _u, _a, ts, _r, _restricted, _f, body = row
        if kind != "identify":
            continue
        traits = orjson.loads(body).get("traits")
        if isinstance(traits, dict):
            for name, value in traits.items():
                latest[name] = (ws, profile_id, name, orjson.dumps(value).decode(), origin, "identify", ts, mid)
    return list(latest.values())


def allowed_purposes(rt: WorkspaceRuntime, ledger: Sequence[LedgerEntry], at: int) -> set[str]:
    return {p.name for p in rt.catalog if may_use(ledger, p, at).allowed}
