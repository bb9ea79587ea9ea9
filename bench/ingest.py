"""Durable ``/v1/batch`` ingestion benchmark: rapport over HTTP, rapport in-process, and the floor.

    .venv/bin/python bench/ingest.py --backend sqlite --events 200000
    .venv/bin/python bench/ingest.py --backend postgres --events 200000 \\
        --postgres-url postgresql://postgres@127.0.0.1:5432/postgres

One run measures, on a fresh database each:

1. HTTP: ``rapport serve`` as a subprocess on 127.0.0.1; a warm-up that creates most of the shop's
   people; then throughput (closed loop, N keep-alive connections, every 100-event batch
   acknowledged only after it is committed); then acknowledgement latency of 100-event batches
   sent open-loop at half the measured throughput. Afterwards the stored event count must
   equal the acknowledged count (nothing lost, nothing doubled).
2. In-process: ``Rapport.ingest`` called directly (parse + pipeline, and pipeline alone), to
   separate the HTTP server's cost from the pipeline's.
3. The floor: orjson parse + one ``executemany`` insert of the same events into the same
   ``events`` table of the same kind of database with the same pragmas and durability
   (SQLite WAL, synchronous=FULL; PostgreSQL defaults, synchronous_commit on), one commit per
   batch; and the same with one commit per ``--connections`` batches (what group commit gets).

Prints a table and writes the figures to ``bench/results/ingest-<backend>-<time>.json``.
Every load loop is bounded in count and in time; only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen
from workload import make_batches

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
HOST = "127.0.0.1"
BATCH = 100


# --- databases ------------------------------------------------------------------------------

@contextlib.contextmanager
def database(backend: str, pg_admin: str, work: Path, tag: str) -> Iterator[str]:
    """A fresh database URL for one measurement, removed afterwards."""
    if backend == "sqlite":
        folder = work / tag
        folder.mkdir(parents=True)
        yield f"sqlite:///{folder / 'rapport.db'}"
        return
    import psycopg

    name = f"rapport_bench_{os.getpid()}_{tag}"
    with psycopg.connect(pg_admin, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = pg_admin.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def analyze(url: str) -> None:
    """PostgreSQL: refresh planner statistics after the warm-up, as autovacuum does on a live database.

    A database created a moment ago has no statistics; until autovacuum's next pass (a minute by
    default) the planner may scan a whole workspace for a dedupe or identifier lookup.
    """
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")


def stored_events(url: str) -> int:
    if url.startswith("sqlite:"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
        return int(row[0]) if row else 0


# --- HTTP -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def rapport_env(url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_")}
    env.update(RAPPORT_DATABASE_URL=url, RAPPORT_DATA_DIR=str(data_dir), RAPPORT_LOG_LEVEL="warning")
    return env


def create_workspace(env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run([str(ROOT / ".venv/bin/rapport"), "workspace", "create", "bench", "--json"],
                         env=env, check=True, capture_output=True, text=True, timeout=120)
    return dict(json.loads(out.stdout))


@contextlib.contextmanager
def server(env: dict[str, str], port: int, log: Path,
           command: list[str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` (default ``rapport serve``) on ``port`` until the block ends (SIGTERM, as an operator stops it)."""
    argv = [*(command or [str(ROOT / ".venv/bin/rapport"), "serve"]), "--host", HOST, "--port", str(port)]
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{' '.join(argv[:2])} did not start; see {log}")
                time.sleep(0.1)
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_async(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def http_phase(args: argparse.Namespace, url: str, data_dir: Path, batches: list[bytes]) -> dict[str, Any]:
    env = rapport_env(url, data_dir)
    ws = create_workspace(env)
    port = free_port()
    warm_n = args.warmup // BATCH
    tput_n = args.events // BATCH
    requests = [loadgen.build_request(HOST, port, ws["write_key"], b, compress=args.gzip) for b in batches]
    warm, tput, lat = requests[:warm_n], requests[warm_n:warm_n + tput_n], requests[warm_n + tput_n:]
    result: dict[str, Any] = {}
    with server(env, port, data_dir / "server.log"):
        w = run_async(loadgen.closed_loop(HOST, port, warm, connections=args.connections,
                                          max_seconds=args.max_seconds))
        result["warmup"] = summary(w)
        analyze(url)
        t = run_async(loadgen.closed_loop(HOST, port, tput, connections=args.connections,
                                          max_seconds=args.max_seconds))
        result["throughput"] = summary(t)
        rate_events = result["throughput"]["events_per_s"] / 2
        rate_batches = rate_events / BATCH
        latency_n = min(len(lat), int(rate_batches * args.latency_seconds))
        lo = run_async(loadgen.open_loop(HOST, port, lat[:latency_n], rate=rate_batches,
                                         max_seconds=args.latency_seconds))
        result["latency"] = summary(lo) | {"offered_events_per_s": rate_events}
        time.sleep(0.5)
    acked = sum(result[k]["acked_events"] for k in ("warmup", "throughput", "latency"))
    stored = stored_events(url)
    result["acknowledged_events"] = acked
    result["stored_events"] = stored
    result["exactly_once"] = acked == stored
    return result


def summary(o: loadgen.Outcome) -> dict[str, Any]:
    ms = [x * 1000 for x in o.latencies]
    return {
        "acked_events": o.acked_requests * BATCH, "failed_requests": o.failed_requests,
        "statuses": {str(k): v for k, v in o.statuses.items()}, "first_error": o.first_error,
        "seconds": round(o.elapsed, 3), "events_per_s": round(o.acked_requests * BATCH / o.elapsed, 1),
        "p50_ms": round(loadgen.percentile(ms, 50), 2), "p90_ms": round(loadgen.percentile(ms, 90), 2),
        "p99_ms": round(loadgen.percentile(ms, 99), 2), "max_ms": round(max(ms), 2) if ms else None,
    }


# --- in-process -----------------------------------------------------------------------------

def inprocess_phase(args: argparse.Namespace, url: str, data_dir: Path, batches: list[bytes]) -> dict[str, Any]:
    from rapport.clock import parse_iso
    from rapport.core import Rapport
    from rapport.ingestion.parse import parse_batch
    from rapport.ingestion.plans import check_plans
    from rapport.settings import Settings

    rapport = Rapport(Settings(database_url=url, data_dir=data_dir))
    try:
        ws = rapport.create_workspace("bench").workspace_id
        warm_n, tput_n = args.warmup // BATCH, args.events // BATCH
        warm, tput = batches[:warm_n], batches[warm_n:warm_n + tput_n]

        def parse(body: bytes) -> list[Any]:
            payload = orjson.loads(body)
            received = parse_iso(payload["sentAt"]) + 20
            indexed, _errors = parse_batch(payload, received_at=received, new_id=lambda: rapport.clock.new_id("msg"))
            accepted, _, _ = check_plans(rapport.runtime(ws).plans, indexed)
            return accepted

        def submit_all(items: list[bytes], threads: int, pre_parsed: list[list[Any]] | None) -> tuple[int, float]:
            position = 0
            lock = threading.Lock()
            acked = 0
            deadline = time.perf_counter() + args.max_seconds

            def work() -> None:
                nonlocal position, acked
                while time.perf_counter() < deadline:
                    with lock:
                        i = position
                        position += 1
                    if i >= len(items):
                        return
                    messages = pre_parsed[i] if pre_parsed is not None else parse(items[i])
                    result = rapport.ingest(ws, messages).result()
                    with lock:
                        acked += result.accepted

            started = time.perf_counter()
            pool = [threading.Thread(target=work) for _ in range(threads)]
            for th in pool:
                th.start()
            for th in pool:
                th.join()
            return acked, time.perf_counter() - started

        submit_all(warm, args.connections, None)
        analyze(url)
        half = len(tput) // 2
        acked, secs = submit_all(tput[:half], args.connections, None)
        parsed = [parse(b) for b in tput[half:]]
        acked2, secs2 = submit_all([b""] * len(parsed), args.connections, parsed)
        started = time.perf_counter()
        for b in tput[half:]:
            parse(b)
        parse_secs = time.perf_counter() - started
        return {
            "parse_and_pipeline_events_per_s": round(acked / secs, 1),
            "pipeline_only_events_per_s": round(acked2 / secs2, 1),
            "parse_only_events_per_s": round(len(parsed) * BATCH / parse_secs, 1),
            "events": acked + acked2,
        }
    finally:
        rapport.close()


# --- floor ----------------------------------------------------------------------------------

FLOOR_INSERT = (
    "INSERT INTO events (workspace_id, dedupe_key, message_id, profile_id, origin_profile_id, type, name,"
    " user_id, anonymous_id, ts, received_at, restricted, flagged, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
    " ?, ?) ON CONFLICT (workspace_id, dedupe_key) DO NOTHING"
)


def floor_rows(body: bytes, received: int) -> list[tuple[Any, ...]]:
    """Rows for the floor. There is no identity resolution, so the person's anonymous id stands in for
    the profile id: the profile indexes then see the same scatter as rapport's (not a constant key)."""
    payload = orjson.loads(body)
    return [
        ("ws_floor", m["messageId"], m["messageId"], m["anonymousId"], m["anonymousId"], m["type"],
         m.get("event") or m.get("name"), m.get("userId"), m.get("anonymousId"), received, received, 0, 0,
         orjson.dumps(m).decode())
        for m in payload["batch"]
    ]


def floor_phase(args: argparse.Namespace, url: str, data_dir: Path, batches: list[bytes],
                per_commit: int) -> dict[str, Any]:
    """Parse + executemany into rapport's own ``events`` table (schema made by rapport), committing
    every ``per_commit`` batches, on a connection with rapport's pragmas."""
    from rapport.settings import Settings
    from rapport.storage import open_database

    open_database(Settings(database_url=url, data_dir=data_dir)).close()  # schema, exactly rapport's
    items = batches[args.warmup // BATCH: (args.warmup + args.events) // BATCH]
    received = int(time.time() * 1000)
    if url.startswith("sqlite:"):
        from rapport.storage.sqlite.database import _connect

        conn = _connect(url.removeprefix("sqlite:///"), readonly=False)
        begin, commit = "BEGIN IMMEDIATE", "COMMIT"

        def execmany(sql: str, rows: list[tuple[Any, ...]]) -> None:
            conn.raw.executemany(sql, rows)

        def execute(sql: str) -> None:
            conn.raw.execute(sql)
    else:
        import psycopg

        pconn = psycopg.connect(url, autocommit=True)
        sql_pg = FLOOR_INSERT.replace("?", "%s")
        begin, commit = "BEGIN", "COMMIT"

        def execmany(sql: str, rows: list[tuple[Any, ...]]) -> None:
            with pconn.cursor() as cur:
                cur.executemany(sql_pg, rows)

        def execute(sql: str) -> None:
            pconn.execute(sql)
    deadline = time.perf_counter() + args.max_seconds
    started = time.perf_counter()
    done = 0
    for start in range(0, len(items), per_commit):
        if time.perf_counter() > deadline:
            break
        execute(begin)
        for body in items[start:start + per_commit]:
            execmany(FLOOR_INSERT, floor_rows(body, received))
            done += BATCH
        execute(commit)
    secs = time.perf_counter() - started
    if url.startswith("sqlite:"):
        conn.close()
    else:
        pconn.close()
    return {"events": done, "seconds": round(secs, 3), "events_per_s": round(done / secs, 1),
            "batches_per_commit": per_commit}


# --- main -----------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("sqlite", "postgres"), required=True)
    ap.add_argument("--events", type=int, default=200_000, help="events in the measured throughput phase")
    ap.add_argument("--warmup", type=int, default=20_000, help="events sent first (creates most people)")
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--connections", type=int, default=16, help="closed-loop keep-alive connections")
    ap.add_argument("--latency-seconds", type=float, default=20.0, help="length of the open-loop phase")
    ap.add_argument("--max-seconds", type=float, default=300.0, help="time bound of every load loop")
    ap.add_argument("--gzip", action="store_true", help="gzip request bodies")
    ap.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                    help="admin URL; a database is created for each measurement and dropped after")
    ap.add_argument("--skip", action="append", default=[], choices=("http", "inprocess", "floor"))
    ap.add_argument("--label", default="", help="added to the result file name, e.g. 'baseline'")
    args = ap.parse_args()
    if args.backend == "postgres":
        loadgen.check_loopback(socket.gethostbyname(args.postgres_url.split("@")[-1].split(":")[0].split("/")[0]))

    now = int(time.time() * 1000)
    run = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    # Enough batches for warm-up, throughput and the latency phase at up to 25k events/s.
    latency_batches = int(25_000 / BATCH / 2 * args.latency_seconds) + 1
    total = args.warmup // BATCH + args.events // BATCH + latency_batches
    t0 = time.perf_counter()
    batches = make_batches(total, seed=11, run=run, now_ms=now, users=args.users)
    print(f"generated {total} batches of {BATCH} events in {time.perf_counter() - t0:.1f} s "
          f"({sum(map(len, batches)) / total / 1024:.1f} KiB per batch)", flush=True)

    work = Path(tempfile.mkdtemp(prefix="rapport-bench-"))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "backend": args.backend,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "args": {k: v for k, v in vars(args).items() if k != "postgres_url"},
        "code": code_version(),
    }
    try:
        if "http" not in args.skip:
            with database(args.backend, args.postgres_url, work, "http") as url:
                results["http"] = http_phase(args, url, work / "http-data", batches)
            h = results["http"]
            print(f"http: {h['throughput']['events_per_s']:.0f} events/s; latency p50 {h['latency']['p50_ms']} ms "
                  f"p99 {h['latency']['p99_ms']} ms at {h['latency']['offered_events_per_s']:.0f} events/s; "
                  f"exactly once: {h['exactly_once']}", flush=True)
        if "inprocess" not in args.skip:
            with database(args.backend, args.postgres_url, work, "inproc") as url:
                results["inprocess"] = inprocess_phase(args, url, work / "inproc-data", batches)
            print(f"in-process: {results['inprocess']}", flush=True)
        if "floor" not in args.skip:
            with database(args.backend, args.postgres_url, work, "floor1") as url:
                results["floor"] = floor_phase(args, url, work / "floor1-data", batches, 1)
            with database(args.backend, args.postgres_url, work, "floorg") as url:
                results["floor_grouped"] = floor_phase(args, url, work / "floorg-data", batches, args.connections)
            print(f"floor: {results['floor']['events_per_s']:.0f} events/s (commit per batch), "
                  f"{results['floor_grouped']['events_per_s']:.0f} events/s "
                  f"(commit per {args.connections} batches)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"ingest-{args.backend}-{run}{'-' + args.label if args.label else ''}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


def code_version() -> dict[str, Any]:
    """The commit measured, whether the work tree had changes, and where ``rapport`` was imported from."""
    import rapport

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return ""

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", "rapport")),
            "rapport_from": str(Path(rapport.__file__).parent)}


def report(r: dict[str, Any]) -> None:
    floor = r.get("floor", {}).get("events_per_s")
    grouped = r.get("floor_grouped", {}).get("events_per_s")

    def ratio(x: float | None) -> str:
        if x is None or not floor:
            return ""
        return f"{x / floor:.2f} of floor" + (f", {x / grouped:.2f} of grouped floor" if grouped else "")

    rows: list[tuple[str, str, str]] = []
    if "http" in r:
        h = r["http"]
        t = h["throughput"]["events_per_s"]
        rows.append(("rapport HTTP /v1/batch, durable (events/s)", f"{t:,.0f}", ratio(t)))
        lat = h["latency"]
        rows.append((f"ack latency, 100-event batch at {lat['offered_events_per_s']:,.0f} events/s",
                     f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms", f"max {lat['max_ms']} ms"))
        rows.append(("stored == acknowledged", str(h["exactly_once"]),
                     f"{h['stored_events']:,} stored, {h['acknowledged_events']:,} acked"))
    if "inprocess" in r:
        i = r["inprocess"]
        rows.append(("rapport in-process, parse + pipeline (events/s)", f"{i['parse_and_pipeline_events_per_s']:,.0f}",
                     ratio(i["parse_and_pipeline_events_per_s"])))
        rows.append(("rapport in-process, pipeline only (events/s)", f"{i['pipeline_only_events_per_s']:,.0f}",
                     ratio(i["pipeline_only_events_per_s"])))
        rows.append(("parse only, one thread (events/s)", f"{i['parse_only_events_per_s']:,.0f}", ""))
    if floor:
        rows.append(("floor: orjson + executemany, commit per batch", f"{floor:,.0f}", ""))
    if grouped:
        rows.append((f"floor: same, commit per {r['floor_grouped']['batches_per_commit']} batches",
                     f"{grouped:,.0f}", ""))
    width = max(len(a) for a, _, _ in rows) if rows else 0
    print(f"\n{r['backend']} — {r['machine']['cpus']} CPUs — {r['date']}")
    for a, b, c in rows:
        print(f"  {a:<{width}}  {b:>28}  {c}")


if __name__ == "__main__":
    main()
