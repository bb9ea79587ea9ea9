"""Segments benchmark: ingestion with live segments, on-time flips, and the batch refresh.

    .venv/bin/python bench/segments.py --backend sqlite
    .venv/bin/python bench/segments.py --backend postgres

One run measures, each on a fresh database of the chosen backend:

1. Ingestion (``Rapport.ingest`` from 16 threads, identity + consent + PII + computed traits, as
   ``bench/ingest.py`` measures in process) of the same shop traffic twice: without segments (the
   peer) and with ``--segments`` live segments (rules over event windows, computed traits, traits
   and consent). The events/s of both and their ratio. With segments, every acknowledged batch has
   its ``Segment Entered``/``Exited`` events committed in the same transaction as the events that
   caused them, so the delay from acknowledgement to ``Segment Entered`` is 0 by construction; the
   acknowledgement latency (p50/p99) of 100-event batches at ``--rate`` events/s is reported.
2. Time-based flips: ``--timers`` profiles get a flip due in the next ``--spread`` seconds (their
   only event leaves a 5-minute window); the scheduler pass (``run_due``) runs in a loop on the real
   clock and each flip's lateness (commit time - due instant) is recorded: p50/p99/max.
3. Batch refresh: ``rapport segments refresh`` of ``--refresh-segments`` segments over every
   profile, by the SQL engine, beside the floor: hand-written SQL for the same audiences (one
   GROUP BY query over the buckets per segment). Beside each refresh, a one-statement write every
   50 ms measures how long ingestion waits for the writer meanwhile (the longest wait is reported).

Writes the figures to ``bench/results/segments-<backend>-<time>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import analyze, database
from workload import iso, make_batches

from rapport.api.app import run_backfills, run_segments
from rapport.clock import parse_iso
from rapport.core import Rapport
from rapport.ingestion.parse import parse_batch, parse_message
from rapport.resources import service as resources
from rapport.segments import service as segments_service
from rapport.settings import Settings
from rapport.storage.sql import segments as segments_sql
from rapport.storage.sqlite import database as sqlite_database

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
EVENTS = ("Product Viewed", "Product Clicked", "Products Searched", "Cart Added", "Checkout Started",
          "Order Completed")
WINDOWS = ("15m", "1h", "6h", "1d", "7d", "30d")


def segment_yaml(count: int) -> str:
    """``count`` segments of the shapes marketers write, over the workload's events and traits."""
    docs = []
    for i in range(count):
        event = EVENTS[i % len(EVENTS)]
        window = WINDOWS[(i // len(EVENTS)) % len(WINDOWS)]
        kind = i % 5
        if kind == 0:
            rule = f'count("{event}", within={window}) >= {1 + i % 3}'
        elif kind == 1:
            rule = f'count("{event}", within={window}) >= 1 and traits.plan == "{("free", "plus", "pro")[i % 3]}"'
        elif kind == 2:
            rule = f'computed.orders_30d >= {1 + i % 2} and consent.analytics'
        elif kind == 3:
            rule = f'sum("Order Completed", "revenue", within={window}) > {50 * (1 + i % 4)}'
        else:
            rule = (f'count("{event}") >= 1 and count("{event}", within={window}) == 0'
                    f' and exists(traits.email)')
        docs.append(f"kind: Segment\nname: s{i:03d}\nrule: '{rule}'\n")
    return "---\n".join(docs)


def parse(rapport: Rapport, body: bytes) -> list[Any]:
    payload = orjson.loads(body)
    received = parse_iso(payload["sentAt"]) + 20
    indexed, _errors = parse_batch(payload, received_at=received, new_id=lambda: rapport.clock.new_id("msg"))
    return [m for _, m in indexed]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def settle(url: str) -> None:
    """SQLite: wait until the WAL is copied into the database file, as the checkpointer thread does a moment
    after a large transaction (loading a million profiles, a first refresh writing millions of rows).

    Until then every page read searches a WAL index of millions of frames while the checkpointer copies
    them on the other core, which is no steady state to time a refresh or its floor in.
    """
    if url.startswith("sqlite:"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"), timeout=600)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


@contextlib.contextmanager
def opened(url: str, data_dir: Path) -> Iterator[tuple[Rapport, str]]:
    rapport = Rapport(Settings(database_url=url, data_dir=data_dir))
    try:
        yield rapport, rapport.create_workspace("bench").workspace_id
    finally:
        rapport.close()


def ingest_all(rapport: Rapport, ws: str, batches: list[list[Any]], threads: int) -> tuple[int, float]:
    position, acked = 0, 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal position, acked
        while True:
            with lock:
                i = position
                position += 1
            if i >= len(batches):
                return
            result = rapport.ingest(ws, batches[i]).result()  # type: ignore[arg-type]
            with lock:
                acked += result.accepted

    started = time.perf_counter()
    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return acked, time.perf_counter() - started


def ingestion_phase(args: argparse.Namespace, url: str, work: Path, with_segments: bool) -> dict[str, Any]:
    now = int(time.time() * 1000)
    raw = make_batches(args.warmup // 100 + args.events // 100, seed=3, run=f"seg{int(with_segments)}", now_ms=now)
    with opened(url, work) as (rapport, ws):
        if with_segments:
            rapport.db.write(lambda c: resources.apply(c, ws, segment_yaml(args.segments), "bench",
                                                       rapport.clock.now_ms()))
            rapport.runtime(ws, fresh=True)
            run_backfills(rapport)
            run_segments(rapport)
        batches = [parse(rapport, b) for b in raw]
        warm, tput = batches[:args.warmup // 100], batches[args.warmup // 100:]
        ingest_all(rapport, ws, warm[:len(warm) // 10], args.threads)
        analyze(url)  # PostgreSQL: planner statistics of the young database (autovacuum's job in a server)
        ingest_all(rapport, ws, warm[len(warm) // 10:], args.threads)
        analyze(url)
        acked, secs = ingest_all(rapport, ws, tput, args.threads)
        out: dict[str, Any] = {"events_per_s": round(acked / secs, 1), "events": acked,
                               "segments": args.segments if with_segments else 0}
        if with_segments:
            out["latency"] = latency(rapport, ws, args)
            out["entered_events"] = rapport.db.read(lambda c: int(c.value(
                "SELECT count(*) FROM events WHERE workspace_id = ? AND name = 'Segment Entered'", (ws,))))
        return out


def latency(rapport: Rapport, ws: str, args: argparse.Namespace) -> dict[str, Any]:
    """Acknowledgement latency of 100-event batches sent open loop at ``--rate`` events/s."""
    now = int(time.time() * 1000)
    raw = make_batches(int(args.rate * args.latency_seconds / 100), seed=9, run="lat", now_ms=now)
    batches = [parse(rapport, b) for b in raw]
    interval = 100 / args.rate
    samples: list[float] = []
    lock = threading.Lock()
    start = time.perf_counter()
    futures = []
    for i, batch in enumerate(batches):
        due = start + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)

        def done(_f: Any, due: float = due) -> None:
            with lock:
                samples.append((time.perf_counter() - due) * 1000)

        future = rapport.ingest(ws, batch)
        future.add_done_callback(done)
        futures.append(future)
    for f in futures:
        f.result()
    return {"rate": args.rate, "batches": len(samples), "p50_ms": round(pct(samples, 0.5), 2),
            "p99_ms": round(pct(samples, 0.99), 2), "max_ms": round(max(samples), 2),
            "ack_to_segment_entered_ms": 0.0}


def timers_phase(args: argparse.Namespace, url: str, work: Path) -> dict[str, Any]:
    """Profiles whose one event leaves a 5-minute window at staggered instants; the scheduler's lateness."""
    with opened(url, work) as (rapport, ws):
        doc = "kind: Segment\nname: recent\nrule: 'count(\"Ping\", within=5m) >= 1'\n"
        rapport.db.write(lambda c: resources.apply(c, ws, doc, "bench", rapport.clock.now_ms()))
        rapport.runtime(ws, fresh=True)
        run_backfills(rapport)
        run_segments(rapport)
        # Events stamped in the past five minutes so that each one leaves the 5-minute window within
        # --spread seconds, starting --lead seconds from now, once all are stored: lateness is the scheduler's.
        base = int(time.time() * 1000) - 300_000 + args.lead * 1000
        grant = {"consent": {"categoryPreferences": {"Analytics": True}}}
        received = int(time.time() * 1000)
        step = args.spread * 1000 / args.timers
        batch: list[Any] = []
        futures = []
        for i in range(args.timers):
            ts = base + int(i * step)
            batch.append(parse_message({"type": "track", "userId": f"t{i}", "event": "Ping", "context": grant,
                                        "timestamp": iso(ts), "messageId": f"ping-{i}"}, implied_type=None,
                                       received_at=received, batch_sent_at=None, batch_context=None,
                                       new_id=lambda: rapport.clock.new_id("msg")))
            if len(batch) == 500:
                futures.append(rapport.ingest(ws, batch))
                batch = []
                if len(futures) > 8:
                    futures.pop(0).result()
                if i + 1 == 5000:  # PostgreSQL: planner statistics of the young database
                    for f in futures:
                        f.result()
                    analyze(url)
        if batch:
            futures.append(rapport.ingest(ws, batch))
        for f in futures:
            f.result()
        analyze(url)
        pending = rapport.db.read(lambda c: int(c.value(
            "SELECT count(*) FROM segment_timers WHERE workspace_id = ?", (ws,))))
        rt = rapport.runtime(ws)
        lateness: list[float] = []
        deadline = time.time() + args.spread + 120
        while time.time() < deadline:
            def job(conn: Any) -> list[tuple[str, int]]:
                rows = segments_sql.due_timers(conn, rt.id, rapport.clock.now_ms(), 2000)
                if rows:
                    due = dict(rows)
                    segments_service.MembershipWriter(conn, rt, rapport.clock).evaluate(
                        {p: set(rt.segments) for p in due}, due)
                return rows

            rows = rapport.db.write(job)
            committed = time.time() * 1000
            lateness.extend(committed - due for _, due in rows)
            if not rows:
                left = rapport.db.read(lambda c: segments_sql.next_due(c, rt.id))
                if left is None:
                    break
                time.sleep(0.05)
        members = rapport.db.read(lambda c: segments_sql.count(c, ws, "recent"))
        return {"pending_timers": pending, "fired": len(lateness), "members_left": members,
                "lateness_p50_ms": round(pct(lateness, 0.5), 1), "lateness_p99_ms": round(pct(lateness, 0.99), 1),
                "lateness_max_ms": round(max(lateness), 1) if lateness else None}


def bulk_load(rapport: Rapport, ws: str, rt: Any, profiles: int, now: int) -> None:
    """``profiles`` live profiles, each with 1-4 events of the benchmark's kinds in the last 30 days, as
    the rows of ``profiles`` and ``buckets`` that ingestion keeps (one bucket per event second)."""
    import random

    rng = random.Random(7)
    series = sorted({s for segment in rt.segments.values() for s in segment.series})
    step = 5_000
    for start in range(0, profiles, step):
        people, buckets = [], []
        for i in range(start, min(profiles, start + step)):
            pid = f"prf_bulk{i:09d}"
            people.append((ws, pid, b"\0" * 16, now, now))
            for s in rng.sample(series, rng.randint(1, 4)):
                ts = now - rng.randint(1, 30 * 86_400) * 1000
                buckets.append((ws, pid, s, ts, 1, 0, 0.0, None, None, ts, 1, None, ts, 1, None))

        def write(conn: Any, people: list[Any] = people, buckets: list[Any] = buckets) -> None:
            conn.executemany("INSERT INTO profiles (workspace_id, id, data_key, created_at, updated_at)"
                             " VALUES (?, ?, ?, ?, ?)", people)
            conn.executemany("INSERT INTO buckets (workspace_id, profile_id, series, bucket, n, nn, total, vmin,"
                             " vmax, first_ts, first_seq, first_val, last_ts, last_seq, last_val)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", buckets)

        rapport.db.write(write)


@contextlib.contextmanager
def writer_waits(rapport: Rapport) -> Iterator[list[float]]:
    """What ingestion waits for while the block runs: a one-statement write every 50 ms, each wait in ms."""
    waits: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.wait(0.05):
            started = time.perf_counter()
            rapport.db.write(lambda c: c.value("SELECT 1"))
            waits.append((time.perf_counter() - started) * 1000)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        yield waits
    finally:
        stop.set()
        thread.join()


def refresh_phase(args: argparse.Namespace, url: str, work: Path) -> dict[str, Any]:
    """The batch refresh of N segments over every profile, beside hand-written SQL for the same audiences."""
    now = int(time.time() * 1000)
    raw = [] if args.refresh_profiles else make_batches(args.refresh_events // 100, seed=5, run="ref", now_ms=now,
                                                         users=args.refresh_users)
    with opened(url, work) as (rapport, ws):
        docs = []
        for i in range(args.refresh_segments):
            event = EVENTS[i % len(EVENTS)]
            window = WINDOWS[(i // len(EVENTS)) % len(WINDOWS)]
            docs.append(f"kind: Segment\nname: r{i:03d}\nrule: 'count(\"{event}\", within={window}) >= 1'\n")
        rapport.db.write(lambda c: resources.apply(c, ws, "---\n".join(docs), "bench", rapport.clock.now_ms()))
        rapport.runtime(ws, fresh=True)
        run_backfills(rapport)
        first_refresh, first_waits = None, []
        if args.refresh_profiles:
            bulk_load(rapport, ws, rapport.runtime(ws), args.refresh_profiles, now)
            analyze(url)
            settle(url)
            started = time.perf_counter()
            with writer_waits(rapport) as first_waits:
                segments_service.refresh_database(rapport.db, rapport.runtime(ws), rapport.clock)
            first_refresh = round(time.perf_counter() - started, 2)
        else:
            batches = [parse(rapport, b) for b in raw]
            first = max(1, len(batches) // 20)
            ingest_all(rapport, ws, batches[:first], args.threads)
            analyze(url)  # PostgreSQL: planner statistics of the young database (autovacuum's job in a server)
            ingest_all(rapport, ws, batches[first:], args.threads)
            analyze(url)
        profiles = rapport.db.read(lambda c: int(c.value(
            "SELECT count(*) FROM profiles WHERE workspace_id = ? AND merged_into IS NULL", (ws,))))
        rt = rapport.runtime(ws, fresh=True)
        while rapport.db.write(lambda c: segments_service.run_due(c, rt, rapport.clock)):
            pass  # flips due while loading (a window passing): what the scheduler does in a server
        settle(url)
        started = time.perf_counter()
        with writer_waits(rapport) as waits:
            report = segments_service.refresh_database(rapport.db, rt, rapport.clock)
        ours = time.perf_counter() - started
        at = rapport.clock.now_ms()
        series = {name: next(iter(s.series)) for name, s in rt.segments.items()}

        def floor(conn: Any) -> int:
            total = 0
            for name, segment in rt.segments.items():
                window = segment.rule.left.within_ms  # type: ignore[union-attr]
                total += len(conn.all(
                    "SELECT profile_id FROM buckets WHERE workspace_id = ? AND series = ? AND bucket <= ?"
                    " AND bucket > ? GROUP BY profile_id HAVING sum(n) >= 1",
                    (ws, series[name], at, at - window)))
            return total

        started = time.perf_counter()
        floor_members = rapport.db.read(floor)
        floor_secs = time.perf_counter() - started
        return {"segments": len(report), "profiles": profiles, "first_refresh_s": first_refresh,
                "refresh_s": round(ours, 2),
                "members": sum(r.members for r in report), "differences": sum(r.entered + r.exited for r in report),
                "floor_s": round(floor_secs, 2), "floor_members": floor_members,
                "ratio_to_floor": round(ours / floor_secs, 1) if floor_secs else None,
                "writer_wait_max_ms": {"first": round(max(first_waits), 1) if first_waits else None,
                                       "reconciling": round(max(waits), 1) if waits else None}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--postgres-url", default=os.environ.get("RAPPORT_BENCH_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--warmup", type=int, default=20_000)
    ap.add_argument("--segments", type=int, default=200)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--rate", type=float, default=1000.0, help="events/s of the latency phase")
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    ap.add_argument("--timers", type=int, default=100_000)
    ap.add_argument("--spread", type=int, default=60, help="seconds over which the timers fall due")
    ap.add_argument("--lead", type=int, default=45, help="seconds before the first timer falls due (< 60)")
    ap.add_argument("--refresh-segments", type=int, default=50)
    ap.add_argument("--refresh-events", type=int, default=200_000)
    ap.add_argument("--refresh-users", type=int, default=100_000)
    ap.add_argument("--refresh-profiles", type=int, default=0,
                    help="instead of ingesting --refresh-events, bulk-load this many profiles with their buckets"
                         " (the rows ingestion would keep) and time the first refresh and a second one")
    ap.add_argument("--skip", action="append", default=[], choices=("ingest", "timers", "refresh"))
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    results: dict[str, Any] = {"backend": args.backend, "cpus": os.cpu_count(), "python": platform.python_version(),
                               "started": datetime.now(UTC).isoformat(timespec="seconds"), "args": vars(args),
                               "sqlite_unshared_allocations": sqlite_database.UNSHARED_ALLOCATIONS}
    with tempfile.TemporaryDirectory(prefix="rapport-bench-") as tmp:
        work = Path(tmp)
        if "ingest" not in args.skip:
            for with_segments in (False, True):
                tag = "with" if with_segments else "without"
                with database(args.backend, args.postgres_url, work, f"ing-{tag}") as url:
                    results[f"ingest_{tag}_segments"] = ingestion_phase(args, url, work / tag, with_segments)
                print(f"ingest {tag} segments: {results[f'ingest_{tag}_segments']}", flush=True)
        if "timers" not in args.skip:
            with database(args.backend, args.postgres_url, work, "timers") as url:
                results["timers"] = timers_phase(args, url, work / "timers")
            print(f"timers: {results['timers']}", flush=True)
        if "refresh" not in args.skip:
            with database(args.backend, args.postgres_url, work, "refresh") as url:
                results["refresh"] = refresh_phase(args, url, work / "refresh")
            print(f"refresh: {results['refresh']}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = RESULTS / f"segments-{args.backend}-{stamp}{'-' + args.label if args.label else ''}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")
    if "ingest_with_segments" in results and "ingest_without_segments" in results:
        a, b = results["ingest_with_segments"], results["ingest_without_segments"]
        print(f"{args.backend}: ingestion {b['events_per_s']:,.0f} events/s without segments, "
              f"{a['events_per_s']:,.0f} with {a['segments']} live segments "
              f"({a['events_per_s'] / b['events_per_s']:.2f} of the peer); ack latency at {args.rate:,.0f} ev/s "
              f"p50 {a['latency']['p50_ms']} ms p99 {a['latency']['p99_ms']} ms")



if __name__ == "__main__":
    main()
