"""Recommendation storage: the events a build reads (those with analytics consent), the prebuilt aggregates, and
the last purchases of each person who allows personalization.

A build replaces a workspace's aggregates as a whole (``replace``) inside one write transaction, so readers
see the old tables or the new ones, never a mix.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapport.storage.base import Conn, Row

PRODUCT_COLUMNS = "product_id, name, category, orders, buyers, units, repeat_buyers, interval_ms"
PAIR_COLUMNS = "product_id, other_id, together, confidence, lift"
POPULAR_COLUMNS = "segment, product_id, buyers, units"
PURCHASE_COLUMNS = "profile_id, product_id, last_at, purchases, returned_at"
AGGREGATES = ("rec_products", "rec_pairs", "rec_popular", "rec_purchases")
CHUNK = 500


def named_events(conn: Conn, ws: str, names: Sequence[str], after_seq: int, limit: int) -> list[Row]:
    """(seq, profile_id, name, ts, body) of the workspace's track events named one of ``names`` and stored with
    analytics consent (``restricted = 0``), by sequence after ``after_seq``: one page of a build's pass over the
    stored events."""
    marks = ",".join("?" * len(names))
    return conn.all(f"SELECT seq, profile_id, name, ts, body FROM events WHERE workspace_id = ? AND type = 'track'"
                    f" AND name IN ({marks}) AND restricted = 0 AND seq > ? ORDER BY seq LIMIT ?",
                    (ws, *names, after_seq, limit))


def history(conn: Conn, ws: str, profile_id: str, names: Sequence[str]) -> list[Row]:
    """(name, ts, body) of one profile's track events named one of ``names``, in time order."""
    marks = ",".join("?" * len(names))
    return conn.all(f"SELECT name, ts, body FROM events WHERE workspace_id = ? AND profile_id = ? AND type = 'track'"
                    f" AND name IN ({marks}) ORDER BY ts, seq", (ws, profile_id, *names))


def replace(conn: Conn, ws: str, products: Sequence[Sequence[object]], pairs: Sequence[Sequence[object]],
            popular: Sequence[Sequence[object]], purchases: Sequence[Sequence[object]],
            build: Sequence[object]) -> None:
    """Replace the workspace's aggregates (rows in each table's column order) and record the build
    (built_at, orders, products, pairs, window_ms)."""
    for table in AGGREGATES:
        conn.execute(f"DELETE FROM {table} WHERE workspace_id = ?", (ws,))
    conn.insert_rows(f"INSERT INTO rec_products (workspace_id, {PRODUCT_COLUMNS})", 9, "",
                     [(ws, *row) for row in products])
    conn.insert_rows(f"INSERT INTO rec_pairs (workspace_id, {PAIR_COLUMNS})", 6, "", [(ws, *row) for row in pairs])
    conn.insert_rows(f"INSERT INTO rec_popular (workspace_id, {POPULAR_COLUMNS})", 5, "",
                     [(ws, *row) for row in popular])
    conn.insert_rows(f"INSERT INTO rec_purchases (workspace_id, {PURCHASE_COLUMNS})", 6, "",
                     [(ws, *row) for row in purchases])
    conn.execute("INSERT INTO rec_builds (workspace_id, built_at, orders, products, pairs, window_ms)"
                 " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (workspace_id) DO UPDATE SET built_at = excluded.built_at,"
                 " orders = excluded.orders, products = excluded.products, pairs = excluded.pairs,"
                 " window_ms = excluded.window_ms", (ws, *build))


def last_build(conn: Conn, ws: str) -> Row | None:
    """(built_at, orders, products, pairs, window_ms) of the workspace's last build, if any."""
    return conn.one("SELECT built_at, orders, products, pairs, window_ms FROM rec_builds WHERE workspace_id = ?",
                    (ws,))


def products(conn: Conn, ws: str, ids: Sequence[str] | None = None) -> list[Row]:
    """``PRODUCT_COLUMNS`` of the products among ``ids`` (every product for ``None``)."""
    if ids is None:
        return conn.all(f"SELECT {PRODUCT_COLUMNS} FROM rec_products WHERE workspace_id = ?", (ws,))
    out: list[Row] = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        marks = ",".join("?" * len(chunk))
        out += conn.all(f"SELECT {PRODUCT_COLUMNS} FROM rec_products WHERE workspace_id = ?"
                        f" AND product_id IN ({marks})", (ws, *chunk))
    return out


def pairs_of(conn: Conn, ws: str, anchors: Sequence[str]) -> list[Row]:
    """``PAIR_COLUMNS`` of the pairs anchored on ``anchors``."""
    out: list[Row] = []
    for start in range(0, len(anchors), CHUNK):
        chunk = anchors[start:start + CHUNK]
        marks = ",".join("?" * len(chunk))
        out += conn.all(f"SELECT {PAIR_COLUMNS} FROM rec_pairs WHERE workspace_id = ? AND product_id IN ({marks})",
                        (ws, *chunk))
    return out


def popular(conn: Conn, ws: str, segment: str, limit: int) -> list[Row]:
    """``POPULAR_COLUMNS`` of the segment's most bought products (``limit`` of them)."""
    return conn.all(f"SELECT {POPULAR_COLUMNS} FROM rec_popular WHERE workspace_id = ? AND segment = ?"
                    " ORDER BY buyers DESC, units DESC, product_id LIMIT ?", (ws, segment, limit))


def due(conn: Conn, ws: str, before: int, limit: int) -> list[Row]:
    """(profile_id, product_id, name, last_at, interval_ms, due_at) of the last purchases due for repurchase by
    ``before`` (not returned since), soonest first."""
    return conn.all(
        "SELECT p.profile_id, p.product_id, r.name, p.last_at, r.interval_ms, p.last_at + r.interval_ms"
        " FROM rec_purchases p JOIN rec_products r ON r.workspace_id = p.workspace_id AND r.product_id = p.product_id"
        " WHERE p.workspace_id = ? AND r.interval_ms IS NOT NULL AND p.returned_at IS NULL"
        " AND p.last_at + r.interval_ms <= ? ORDER BY p.last_at + r.interval_ms, p.profile_id, p.product_id LIMIT ?",
        (ws, before, limit))


def handles(conn: Conn, ws: str, profile_ids: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
    """Profile -> (user_id, anonymous_id) of its latest event carrying one, to address events to the person."""
    out: dict[str, tuple[str | None, str | None]] = {}
    for start in range(0, len(profile_ids), CHUNK):
        chunk = profile_ids[start:start + CHUNK]
        marks = ",".join("?" * len(chunk))
        for profile_id, user_id, anonymous_id in conn.all(
                "SELECT profile_id, user_id, anonymous_id FROM events WHERE workspace_id = ?"
                f" AND profile_id IN ({marks}) AND (user_id IS NOT NULL OR anonymous_id IS NOT NULL)"
                " ORDER BY ts, seq", (ws, *chunk)):
            held = out.get(str(profile_id), (None, None))
            out[str(profile_id)] = (user_id if user_id is not None else held[0],
                                    anonymous_id if anonymous_id is not None else held[1])
    return out
