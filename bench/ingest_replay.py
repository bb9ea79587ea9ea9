"""What the ingestion writer's SQL alone costs: its statements replayed with no Python work.

    .venv/bin/python bench/ingest_replay.py --events 40000
    .venv/bin/python bench/ingest_replay.py --events 40000 --segments 200

Ingests the shop workload of ``bench/ingest.py`` in process (16 threads, pipeline only, after a
warm-up) while recording every statement the writer thread runs with its parameters, then replays
them in order on a copy of the database as it was before, on a connection with rapport's settings
(WAL, ``synchronous=FULL``). The replay's events/s is the most the current write set allows on this
machine, whatever the Python around it costs. Prints the time per event of each kind of statement.
With ``--segments N``, the workspace first gets the N live segments of ``bench/segments.py``, so the
statements include their evaluation and the membership they store.
"""

from __future__ import annotations

import argparse
import collections
import copy
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import make_batches

from rapport.clock import parse_iso
from rapport.core import Rapport
from rapport.ingestion.parse import parse_batch
from rapport.ingestion.plans import check_plans
from rapport.settings import Settings
from rapport.storage.sqlite import database

WRITER = "rapport-sqlite-writer"
METHODS = ("execute", "executemany", "insert_rows", "all", "one", "value")


def kind(sql: str) -> str:
    """A statement's kind: its verb and table (``insert INTO events``), or the verb alone."""
    verb = sql.split()[0].upper()
    table = re.search(r"(?:INTO|FROM|UPDATE)\s+(\w+)", sql, re.IGNORECASE)
    return verb if table is None or verb in ("SAVEPOINT", "RELEASE", "ROLLBACK") else f"{verb} {table.group(1)}"


def record(events: int, warmup: int, work: Path, segments: int = 0) -> tuple[int, list[tuple[str, tuple[Any, ...]]],
                                                                           Path]:
    """Ingest, recording the writer's statements after the warm-up; returns the snapshot before them."""
    batches = make_batches((warmup + events) // 100, seed=1, run="replay", now_ms=int(time.time() * 1000))
    rapport = Rapport(Settings(database_url=f"sqlite:///{work}/r.db", data_dir=work))
    log: list[tuple[str, tuple[Any, ...]]] = []
    recording = threading.Event()
    originals = {name: getattr(database.SqliteConn, name) for name in METHODS}

    def recorded(name: str) -> Any:
        original = originals[name]

        def call(self: database.SqliteConn, *args: Any) -> Any:
            if recording.is_set() and threading.current_thread().name == WRITER:
                log.append((name, copy.deepcopy(args)))  # the job reuses its buffers
            return original(self, *args)

        return call

    try:
        ws = rapport.create_workspace("replay").workspace_id
        if segments:
            from segments import segment_yaml

            from rapport.api.app import run_backfills, run_segments
            from rapport.resources import service as resources

            rapport.db.write(lambda c: resources.apply(c, ws, segment_yaml(segments), "bench", rapport.clock.now_ms()))
            rapport.runtime(ws, fresh=True)
            run_backfills(rapport)
            run_segments(rapport)

        def parse(body: bytes) -> list[Any]:
            payload = orjson.loads(body)
            indexed, _ = parse_batch(payload, received_at=parse_iso(payload["sentAt"]) + 20,
                                     new_id=lambda: rapport.clock.new_id("msg"))
            return check_plans(rapport.runtime(ws).plans, indexed)[0]

        def run(items: list[list[Any]]) -> None:
            position, lock = [0], threading.Lock()

            def work_() -> None:
                while True:
                    with lock:
                        i = position[0]
                        position[0] += 1
                    if i >= len(items):
                        return
                    rapport.ingest(ws, items[i]).result()

            pool = [threading.Thread(target=work_) for _ in range(16)]
            for th in pool:
                th.start()
            for th in pool:
                th.join()

        run([parse(b) for b in batches[:warmup // 100]])
        snapshot = work / "before.db"
        with sqlite3.connect(work / "r.db") as src, sqlite3.connect(snapshot) as dst:
            src.backup(dst)
        measured = [parse(b) for b in batches[warmup // 100:]]
        for name in METHODS:
            setattr(database.SqliteConn, name, recorded(name))
        recording.set()
        run(measured)
        recording.clear()
        return sum(len(m) for m in measured), log, snapshot
    finally:
        for name, original in originals.items():
            setattr(database.SqliteConn, name, original)
        rapport.close()


def replay(log: list[tuple[str, tuple[Any, ...]]], snapshot: Path, work: Path) -> tuple[float, dict[str, float]]:
    target = work / "replay.db"
    shutil.copy(snapshot, target)
    conn = database._connect(str(target), readonly=False, autocheckpoint=True)
    spent: dict[str, float] = collections.defaultdict(float)
    started = time.perf_counter()
    for name, args in log:
        t = time.perf_counter()
        getattr(conn, name)(*args)
        spent[kind(args[0])] += time.perf_counter() - t
    total = time.perf_counter() - started
    conn.close()
    return total, spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--warmup", type=int, default=20_000)
    ap.add_argument("--segments", type=int, default=0, help="live segments of bench/segments.py to apply first")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rapport-replay-"))
    try:
        events, log, snapshot = record(args.events, args.warmup, work, args.segments)
        total, spent = replay(log, snapshot, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{events:,} events, {args.segments} live segments, {len(log):,} statements: replayed in {total:.2f} s ="
          f" {total / events * 1e6:.1f} µs per event = {events / total:,.0f} events/s at most")
    for name, secs in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {secs / events * 1e6:7.1f} µs per event  {name}")


if __name__ == "__main__":
    main()
