"""Profile state: traits (newest event time wins) and computed-trait buckets."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson

from rapport.profiles.computed import SUMMARY_FIELDS, Summary, SummaryKey
from rapport.profiles.values import flatten
from rapport.storage.base import Conn, Dialect, Row
from rapport.types import Millis

TRAIT_UPSERT = (
    "INSERT INTO traits (workspace_id, profile_id, name, value, key_profile_id, source, ts, message_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (workspace_id, profile_id, name) DO UPDATE SET value = excluded.value,"
    " key_profile_id = excluded.key_profile_id, source = excluded.source, ts = excluded.ts,"
    " message_id = excluded.message_id WHERE excluded.ts >= traits.ts"
)


def _many(conn: Conn, head: str, width: int, tail: str, rows: Sequence[Sequence[object]]) -> None:
    """``head VALUES (...) tail`` for every row, batched (``Conn.insert_rows``).

    The rows' conflict keys must be distinct; every caller builds them from a dict keyed by it.
    """
    conn.insert_rows(head, width, tail, rows)


def upsert_traits(conn: Conn, rows: Iterable[Sequence[object]]) -> None:
    """Rows of (ws, profile, name, value json, key_profile_id, source, ts, message_id), one per (profile, name)."""
    head, _, tail = TRAIT_UPSERT.partition(" VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
    _many(conn, head, 8, tail, list(rows))


def traits(conn: Conn, ws: str, profile_id: str) -> list[Row]:
    """(name, value, key_profile_id, source, ts, message_id) of a profile."""
    return conn.all(
        "SELECT name, value, key_profile_id, source, ts, message_id FROM traits"
        " WHERE workspace_id = ? AND profile_id = ? ORDER BY name",
        (ws, profile_id),
    )


def delete_derived(conn: Conn, ws: str, profile_id: str) -> None:
    """Forget a profile's traits and buckets (before recomputing them from its events)."""
    for table in ("traits", "trait_values", "buckets", "bucket_values"):
        conn.execute(f"DELETE FROM {table} WHERE workspace_id = ? AND profile_id = ?", (ws, profile_id))


def BUCKET_MERGE(dialect: Dialect) -> str:
    """``ON CONFLICT`` clause folding a new partial aggregate into a stored bucket."""
    earlier = ("(excluded.first_ts < buckets.first_ts OR"
               " (excluded.first_ts = buckets.first_ts AND excluded.first_seq < buckets.first_seq))")
    later = ("(excluded.last_ts > buckets.last_ts OR"
             " (excluded.last_ts = buckets.last_ts AND excluded.last_seq > buckets.last_seq))")
    return (
        "ON CONFLICT (workspace_id, profile_id, series, bucket) DO UPDATE SET"
        " n = buckets.n + excluded.n, nn = buckets.nn + excluded.nn, total = buckets.total + excluded.total,"
        f" vmin = {dialect.least('buckets.vmin', 'excluded.vmin')},"
        f" vmax = {dialect.greatest('buckets.vmax', 'excluded.vmax')},"
        f" first_ts = CASE WHEN {earlier} THEN excluded.first_ts ELSE buckets.first_ts END,"
        f" first_seq = CASE WHEN {earlier} THEN excluded.first_seq ELSE buckets.first_seq END,"
        f" first_val = CASE WHEN {earlier} THEN excluded.first_val ELSE buckets.first_val END,"
        f" last_ts = CASE WHEN {later} THEN excluded.last_ts ELSE buckets.last_ts END,"
        f" last_seq = CASE WHEN {later} THEN excluded.last_seq ELSE buckets.last_seq END,"
        f" last_val = CASE WHEN {later} THEN excluded.last_val ELSE buckets.last_val END"
    )


def upsert_buckets(conn: Conn, rows: Sequence[Sequence[object]]) -> None:
    """Rows of (ws, profile, series, bucket, n, nn, total, vmin, vmax, first_ts, first_seq, first_val,
    last_ts, last_seq, last_val), one per (profile, series, bucket)."""
    _many(conn, "INSERT INTO buckets (workspace_id, profile_id, series, bucket, n, nn, total, vmin, vmax, first_ts,"
          " first_seq, first_val, last_ts, last_seq, last_val)", 15, BUCKET_MERGE(conn.dialect), rows)


def insert_bucket_values(conn: Conn, rows: Sequence[Sequence[object]]) -> None:
    _many(conn, "INSERT INTO bucket_values (workspace_id, profile_id, series, bucket, value)", 5,
          "ON CONFLICT DO NOTHING", rows)


def buckets(conn: Conn, ws: str, profile_id: str, series: Sequence[str]) -> list[Row]:
    """(series, bucket, n, nn, total, vmin, vmax, first_ts, first_seq, first_val, last_ts, last_seq, last_val)."""
    if not series:
        return []
    marks = ",".join("?" * len(series))
    return conn.all(
        "SELECT series, bucket, n, nn, total, vmin, vmax, first_ts, first_seq, first_val, last_ts, last_seq,"
        f" last_val FROM buckets WHERE workspace_id = ? AND profile_id = ? AND series IN ({marks})",
        (ws, profile_id, *series),
    )


SUMMARY_COLUMNS = (("nn", "sum(nn)"), ("total", "{total}"), ("vmin", "min(vmin)"), ("vmax", "max(vmax)"),
                   ("ts", "min(first_ts), max(last_ts)"))
"""The aggregate read for each part of a ``Summary`` beyond its count (``rapport.profiles.computed.SUMMARY_FIELDS``);
a part nobody reads is selected as NULL."""
SUMMARY_TOTALS = {"sqlite": "sum(total)", "postgres": "sum(total ORDER BY bucket)"}
"""SQLite sums a range in its primary key's order; PostgreSQL is told."""
SUMMARY_FROM = (" FROM buckets WHERE workspace_id = ? AND profile_id = ? AND series = ? AND bucket <= ?"
                " AND bucket > ?")
ALL_TIME = -(2 ** 63)
"""The lower bound of the all-time window (no bucket is older)."""


def summaries(conn: Conn, ws: str, profile_id: str, keys: frozenset[SummaryKey], at: Millis,
              fields: frozenset[str] = SUMMARY_FIELDS) -> dict[SummaryKey, Summary]:
    """The summary (``rapport.profiles.computed.Summary``) of each (series, window) of ``keys`` for one profile at
    instant ``at``, in one statement of one index range per key: a key without buckets gets an empty summary.
    Totals are summed in bucket order, so they equal ``evaluate``'s sums. Only the parts in ``fields`` are read
    besides the count (``summary_fields`` says which an aggregate reads); the others keep their empty values."""
    if not keys:
        return {}
    plan = _SUMMARY_PLANS.get((keys, fields, conn.dialect.name))
    if plan is None:
        plan = _summary_plan(keys, fields, conn.dialect.name)
    wanted, sql = plan
    params: list[object] = []
    for index, (series, window) in enumerate(wanted):
        params += (index, ws, profile_id, series, at, ALL_TIME if window is None else at - window)
    out = dict.fromkeys(wanted, _EMPTY_SUMMARY)
    for index, n, nn, summed, vmin, vmax, first_ts, last_ts in conn.all(sql, params):
        if n is not None:
            out[wanted[int(index)]] = Summary(
                int(n), 0 if nn is None else int(nn), 0.0 if summed is None else float(summed),
                None if vmin is None else float(vmin), None if vmax is None else float(vmax),
                None if first_ts is None else int(first_ts), None if last_ts is None else int(last_ts))
    return out


def _summary_plan(keys: frozenset[SummaryKey], fields: frozenset[str], dialect: str
                  ) -> tuple[list[SummaryKey], str]:
    wanted = sorted(keys, key=lambda k: (k[0], -1 if k[1] is None else k[1]))
    columns = ", ".join((SUMMARY_TOTALS[dialect] if part == "total" else aggregate) if part in fields
                        else ("NULL, NULL" if part == "ts" else "NULL") for part, aggregate in SUMMARY_COLUMNS)
    branch = "SELECT CAST(? AS INTEGER), sum(n), " + columns + SUMMARY_FROM
    sql = " UNION ALL ".join([branch] * len(wanted))
    if len(_SUMMARY_PLANS) >= 1024:
        _SUMMARY_PLANS.clear()
    _SUMMARY_PLANS[(keys, fields, dialect)] = wanted, sql
    return wanted, sql


_SUMMARY_PLANS: dict[tuple[frozenset[SummaryKey], frozenset[str], str], tuple[list[SummaryKey], str]] = {}
"""The statement reading each set of summaries and parts, per dialect (bounded: cleared when full)."""
_EMPTY_SUMMARY = Summary()


def bucket_values(conn: Conn, ws: str, profile_id: str, series: Sequence[str]) -> list[Row]:
    if not series:
        return []
    marks = ",".join("?" * len(series))
    return conn.all(
        f"SELECT series, bucket, value FROM bucket_values WHERE workspace_id = ? AND profile_id = ?"
        f" AND series IN ({marks})",
        (ws, profile_id, *series),
    )


def series_states(conn: Conn, ws: str) -> list[Row]:
    """(id, definition, state, watermark, total, done) of every registered series."""
    return conn.all(
        "SELECT id, definition, state, watermark, total, done FROM series WHERE workspace_id = ? ORDER BY id", (ws,))


def register_series(conn: Conn, ws: str, series_id: str, definition: str, watermark: int, total: int,
                    now: int) -> None:
    conn.execute(
        "INSERT INTO series (workspace_id, id, definition, state, watermark, total, done, created_at, updated_at)"
        " VALUES (?, ?, ?, 'backfilling', ?, ?, 0, ?, ?) ON CONFLICT (workspace_id, id) DO NOTHING",
        (ws, series_id, definition, watermark, total, now, now),
    )


def update_series(conn: Conn, ws: str, series_id: str, state: str, done: int, now: int) -> None:
    conn.execute("UPDATE series SET state = ?, done = ?, updated_at = ? WHERE workspace_id = ? AND id = ?",
                 (state, done, now, ws, series_id))


SERIES_LOCK_CLASS = 7301
"""First key of the advisory lock (PostgreSQL) that orders ingestion against backfill chunks."""


def lock_series(conn: Conn, ws: str, *, exclusive: bool) -> None:
    """Order this transaction against the other processes' series hand-offs (PostgreSQL only).

    Ingestion jobs hold the workspace's lock shared from the moment they read which series are
    live until they commit; a backfill chunk holds it exclusive. So a chunk starts only once every
    ingestion transaction that read the older states has committed (its events are visible to the
    chunk's scan, and their sequence numbers cannot appear behind its progress later), and an
    ingestion job that starts after a series went live feeds it. SQLite's single writer orders
    transactions already.
    """
    if conn.dialect.name != "postgres":
        return
    if exclusive:
        conn.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", (SERIES_LOCK_CLASS, ws))
    else:
        conn.execute("SELECT pg_advisory_xact_lock_shared(?, hashtext(?))", (SERIES_LOCK_CLASS, ws))


def live_series(conn: Conn, ws: str) -> set[str]:
    """The series ingestion feeds directly (the others are being backfilled); see ``lock_series``."""
    lock_series(conn, ws, exclusive=False)
    return {str(row[0]) for row in conn.all(
        "SELECT id FROM series WHERE workspace_id = ? AND state = 'live'", (ws,))}


def refresh_trait_values(conn: Conn, ws: str, profile_ids: Iterable[str]) -> None:
    """Rebuild the flattened trait values (``trait_values``) of ``profile_ids`` from their traits."""
    ids = sorted(set(profile_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        conn.execute(f"DELETE FROM trait_values WHERE workspace_id = ? AND profile_id IN ({marks})", (ws, *chunk))
        rows = conn.all(
            f"SELECT profile_id, name, value FROM traits WHERE workspace_id = ? AND profile_id IN ({marks})",
            (ws, *chunk))
        values = [(ws, str(pid), *row) for pid, name, value in rows for row in flatten(str(name), orjson.loads(value))]
        if values:
            conn.insert_rows(
                "INSERT INTO trait_values (workspace_id, profile_id, path, elem, kind, num, txt, instant)", 8, "",
                values)
