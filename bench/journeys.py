"""Journey engine benchmark: due timers dispatched per second and their lateness, with and without a
million pending timers, and SMTP delivery beside bare aiosmtplib.

    .venv/bin/python bench/journeys.py --backend sqlite
    .venv/bin/python bench/journeys.py --backend postgres

One run measures, each on a fresh database of the chosen backend:

1. Timer dispatch: ``--enrollments`` people (consent to ``marketing_email`` granted) enrolled in a
   journey ``delay: 1m`` then ``send`` (a Liquid template, through a ``MemoryChannel``), their timers
   falling due over ``--spread`` seconds on the real clock (``--enrollments / --spread`` timers/s
   offered), then ``--drain`` more all due at one instant (the worker's capacity: how fast it clears
   a backlog). A worker loop runs ``JourneyEngine.run_due`` then ``JourneyEngine.dispatch`` and, when
   both found nothing, sleeps until ``next_due`` (at most 1 s). Reported: timers processed per second
   (offered part: from the first due instant to the last delivery; backlog: from the instant the
   backlog was due, or the offered part finished, to its last delivery), lateness p50/p99/max of the
   timer (``run_due`` commit - due instant) and of the delivery (``dispatch`` commit - due instant),
   and exactly once: every enrollment delivered once (the channel counts idempotency keys and
   repeats; the send log counts ``sent`` rows).
2. The same with ``--background`` extra enrollments whose timers are due in 30 days, and the ratio
   of the backlog rate (and lateness) to (1). ``--repeat R`` runs (1) and (2) alternately R times
   and reports the median of the R ratios (a shared machine makes one pair noisy).
3. Entry: ``JourneyEngine.enroll`` (re-entry and consent checks, the first step, the timer) in
   transactions of 100, enrollments/s.
4. SMTP: an aiosmtpd sink on 127.0.0.1; ``--smtp-messages`` messages through rapport's
   ``SmtpChannel`` (MIME built per message; up to 8 SMTP sessions reused while messages flow) and through bare
   ``aiosmtplib.send`` of the same messages pre-built (the peer), both ``--smtp-concurrency`` at a
   time, alternating ``--smtp-rounds`` times; messages/s of both and their ratio.

Setup writes rows directly where the engine would take long to make them: the enrollments of (1) and
(2) are the rows ``enroll`` stores (state from the journey machine, encoded by the engine) inserted in
bulk, with their timers; (3) measures ``enroll`` itself. Every loop is bounded in count and time;
only loopback addresses are used. Prints a table and writes ``bench/results/journeys-<backend>-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import analyze, code_version, database
from segments import opened

from rapport.channels.base import Message
from rapport.channels.email import SmtpChannel, SmtpSettings, build_email, sender_address
from rapport.channels.memory import MemoryChannel
from rapport.core import Rapport
from rapport.journeys.engine import JourneyEngine, Recipient, encode_state, journeys_of
from rapport.journeys.machine import Enter, idempotency_key, step
from rapport.journeys.machine import enroll as new_enrollment
from rapport.journeys.model import Journey, build
from rapport.storage.base import Conn
from rapport.storage.sql import consent as consent_sql
from rapport.types import DAY, MINUTE, Millis

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
HOST = "127.0.0.1"
DELAY_MS = MINUTE
JOURNEY = """\
kind: Journey
name: bench_reminder
purpose: marketing_email
entry: {event: Bench Started}
reentry: always
steps:
  - delay: 1m
  - send: {channel: email, template: reminder}
"""
TEMPLATES = {"reminder": {"subject": "{{ traits.first_name | default: 'Hi' }}, a reminder",
                          "text": "{{ event.product_name }} is still waiting for you."}}
ENTRY = {"product_name": "Desk Lamp"}
SENDER = "Shop <hello@shop.example>"
CHUNK = 10_000


def pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def now_ms() -> float:
    return time.time() * 1000


def recipient(_conn: Conn, _ws: str, profile_id: str, _channel: str, _group: str | None) -> Recipient:
    return Recipient(f"{profile_id}@bench.example", traits={"first_name": "Ada"},
                     unsubscribe_url=f"https://shop.example/u/{profile_id}")


def grant(rapport: Rapport, ws: str, profiles: Sequence[str]) -> None:
    """Consent to ``marketing_email`` for ``profiles``, as the consent API records it."""
    at = rapport.clock.now_ms() - MINUTE
    for start in range(0, len(profiles), CHUNK):
        rows: list[tuple[object, ...]] = [
            (f"cns_{p}", p, p, "marketing_email", "granted", "consent", "api", None, None, at, at, None, None)
            for p in profiles[start:start + CHUNK]]

        def write(conn: Conn, rows: list[tuple[object, ...]] = rows) -> None:
            consent_sql.append_many(conn, ws, rows)

        rapport.db.write(write)


def bulk_enroll(rapport: Rapport, ws: str, journey: Journey, people: Sequence[tuple[str, str, Millis]]) -> None:
    """The rows ``JourneyEngine.enroll`` stores for each (enrollment id, profile, due instant of the first
    timer): the machine's state after entry ``DELAY_MS`` before the due instant, its timer and its entry."""
    for start in range(0, len(people), CHUNK):
        enrollments, timers, entries = [], [], []
        for enrollment_id, profile, due in people[start:start + CHUNK]:
            at = due - DELAY_MS
            state, _ = step(journey, new_enrollment(journey, enrollment_id, profile), Enter(ENTRY, at), at)
            assert state.waiting_until == due, state
            enrollments.append((ws, enrollment_id, journey.name, journey.version, profile, encode_state(state),
                                "active", "{}", at, at))
            timers.append((ws, enrollment_id, due))
            entries.append((ws, journey.name, profile, at))

        def write(conn: Conn, enrollments: list[Any] = enrollments, timers: list[Any] = timers,
                  entries: list[Any] = entries) -> None:
            conn.insert_rows("INSERT INTO journey_enrollments (workspace_id, id, journey, version, profile_id, state,"
                             " status, assignments, entered_at, updated_at)", 10, "", enrollments)
            conn.insert_rows("INSERT INTO journey_timers (workspace_id, enrollment_id, due_at)", 3, "", timers)
            conn.insert_rows("INSERT INTO journey_entries (workspace_id, journey, profile_id, last_entered_at)", 4,
                             "", entries)

        rapport.db.write(write)


@dataclass
class Worker:
    """A journey worker's loop, recording when each timer was stepped and each message delivered."""

    engine: JourneyEngine
    channel: MemoryChannel
    run_batch: int
    send_batch: int
    stepped_at: dict[str, float] = field(default_factory=dict)
    delivered_at: dict[str, float] = field(default_factory=dict)
    busy_s: float = 0.0
    rounds: int = 0

    async def run(self, expected: int, deadline: float) -> None:
        seen = 0
        while len(self.delivered_at) < expected and time.time() < deadline:
            self.rounds += 1
            started = time.perf_counter()
            stepped = await asyncio.to_thread(self.engine.run_due, self.run_batch)
            committed = now_ms()
            for enrollment_id in stepped:
                self.stepped_at.setdefault(enrollment_id, committed)
            result = await self.engine.dispatch(self.send_batch)
            committed = now_ms()
            for message in self.channel.sent[seen:]:
                self.delivered_at.setdefault(message.idempotency_key, committed)
            seen = len(self.channel.sent)
            if stepped or result.counts:
                self.busy_s += time.perf_counter() - started
                continue
            due = await asyncio.to_thread(self.engine.next_due)
            wait = 1.0 if due is None else (due - now_ms()) / 1000
            await asyncio.sleep(min(1.0, max(0.002, wait)))


def dispatch_phase(args: argparse.Namespace, url: str, work: Path, background: int) -> dict[str, Any]:
    journey = build(yaml.safe_load(JOURNEY))
    with opened(url, work) as (rapport, ws):
        channel = MemoryChannel(rapport.clock, "email")
        engine = JourneyEngine(rapport.db, rapport.clock, {"email": channel}, journeys=journeys_of([journey]),
                               templates=TEMPLATES, recipient=recipient)
        setup: dict[str, Any] = {}
        if background:
            started = time.perf_counter()
            far = int(now_ms()) + 30 * DAY
            bulk_enroll(rapport, ws, journey, [(f"enr_bg{i:09d}", f"bg{i:09d}", far + i) for i in range(background)])
            setup["background_load_s"] = round(time.perf_counter() - started, 1)
        n, m = args.enrollments, args.drain
        profiles = [f"p{i:09d}" for i in range(n + m)]
        started = time.perf_counter()
        grant(rapport, ws, profiles)
        setup["consent_load_s"] = round(time.perf_counter() - started, 1)
        analyze(url)
        t0 = int(now_ms() + args.lead * 1000)
        spread_ms = args.spread * 1000
        backlog_due = t0 + int(spread_ms) + int(args.gap * 1000)
        due = {f"enr_{p}": (t0 + int(i * spread_ms / n) if i < n else backlog_due) for i, p in enumerate(profiles)}
        started = time.perf_counter()
        bulk_enroll(rapport, ws, journey, [(e, e.removeprefix("enr_"), d) for e, d in due.items()])
        analyze(url)
        setup["enroll_load_s"] = round(time.perf_counter() - started, 1)
        setup["margin_before_first_due_ms"] = round(t0 - now_ms())
        worker = Worker(engine, channel, args.run_batch, args.send_batch)
        asyncio.run(worker.run(n + m, backlog_due / 1000 + args.max_seconds))

        key_due = {idempotency_key(e, "1"): d for e, d in due.items()}
        offered = [e for e in due if due[e] < backlog_due]
        backlog = [e for e in due if due[e] == backlog_due]
        timer_late = {e: worker.stepped_at[e] - due[e] for e in due if e in worker.stepped_at}
        delivery_late = {k: worker.delivered_at[k] - key_due[k] for k in key_due if k in worker.delivered_at}

        def delivered(ids: list[str]) -> list[float]:
            keys = [idempotency_key(e, "1") for e in ids]
            return [worker.delivered_at[k] for k in keys if k in worker.delivered_at]

        def lateness(ids: list[str]) -> dict[str, Any]:
            timers = [timer_late[e] for e in ids if e in timer_late]
            sends = [delivery_late[idempotency_key(e, "1")] for e in ids if idempotency_key(e, "1") in delivery_late]
            return {"timer_p50_ms": pct(timers, 0.5), "timer_p99_ms": pct(timers, 0.99),
                    "timer_max_ms": pct(timers, 1.0), "delivery_p50_ms": pct(sends, 0.5),
                    "delivery_p99_ms": pct(sends, 0.99), "delivery_max_ms": pct(sends, 1.0)}

        offered_done = delivered(offered)
        backlog_done = delivered(backlog)
        offered_secs = (max(offered_done) - t0) / 1000 if offered_done else None
        backlog_start = max([backlog_due, *offered_done])
        backlog_secs = (max(backlog_done) - backlog_start) / 1000 if backlog_done else None
        stored = rapport.db.read(lambda c: {str(r[0]): int(r[1]) for r in c.all(
            "SELECT status, count(*) FROM journey_sends WHERE workspace_id = ? GROUP BY status", (ws,))})
        left = rapport.db.read(lambda c: int(c.value(
            "SELECT count(*) FROM journey_timers WHERE workspace_id = ? AND due_at <= ?", (ws, backlog_due))))
        pending = rapport.db.read(lambda c: int(c.value("SELECT count(*) FROM journey_timers WHERE workspace_id = ?",
                                                        (ws,))))
        out: dict[str, Any] = {
            "enrollments": n + m, "background_timers": background, "setup": setup,
            "offered": {"timers": len(offered), "offered_per_s": round(n / args.spread, 1) if args.spread else None,
                        "delivered": len(offered_done),
                        "processed_per_s": round(len(offered_done) / offered_secs, 1) if offered_secs else None,
                        **lateness(offered)},
            "backlog": {"timers": len(backlog), "delivered": len(backlog_done),
                        "processed_per_s": round(len(backlog_done) / backlog_secs, 1) if backlog_secs else None,
                        **lateness(backlog)},
            "worker": {"rounds": worker.rounds, "busy_s": round(worker.busy_s, 2),
                       "per_busy_s": round(len(worker.delivered_at) / worker.busy_s, 1) if worker.busy_s else None},
            "exactly_once": {
                "delivered_keys": len(channel.receipts), "channel_calls": channel.attempts,
                "repeats": channel.repeats, "sent_rows": stored.get("sent", 0), "send_rows_by_status": stored,
                "due_timers_left": left, "pending_timers_after": pending,
                "ok": (len(channel.receipts) == channel.attempts == stored.get("sent", 0) == n + m
                       and channel.repeats == 0 and left == 0 and sum(stored.values()) == n + m),
            },
        }
        return out


def enroll_phase(args: argparse.Namespace, url: str, work: Path) -> dict[str, Any]:
    """``JourneyEngine.enroll`` itself: consent, re-entry, the machine's first step, the timer."""
    journey = build(yaml.safe_load(JOURNEY.replace("delay: 1m", "delay: 30d")))
    with opened(url, work) as (rapport, ws):
        engine = JourneyEngine(rapport.db, rapport.clock, {"email": MemoryChannel(rapport.clock, "email")},
                               journeys=journeys_of([journey]), templates=TEMPLATES, recipient=recipient)
        profiles = [f"e{i:09d}" for i in range(args.enroll)]
        grant(rapport, ws, profiles)
        analyze(url)
        entered = 0
        deadline = time.monotonic() + args.max_seconds
        started = time.perf_counter()
        for start in range(0, len(profiles), 100):
            if time.monotonic() > deadline:
                break
            batch = profiles[start:start + 100]

            def job(conn: Conn, batch: list[str] = batch) -> int:
                at = rapport.clock.now_ms()
                return sum(engine.enroll(conn, ws, journey, p, ENTRY, at) is not None for p in batch)

            entered += rapport.db.write(job)
        secs = time.perf_counter() - started
        return {"enrolled": entered, "attempted": len(profiles), "seconds": round(secs, 2),
                "per_s": round(entered / secs, 1) if secs else None}


# --- SMTP -----------------------------------------------------------------------------------

SINK = r"""
import json, re, signal, sys, threading
from aiosmtpd.controller import Controller

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


class Sink:
    received = 0
    ids = set()

    async def handle_DATA(self, server, session, envelope):
        Sink.received += 1
        found = MESSAGE_ID.search(envelope.original_content or envelope.content or b"")
        if found:
            Sink.ids.add(found.group(1))
        return "250 OK queued"


done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
controller = Controller(Sink(), hostname=sys.argv[1], port=int(sys.argv[2]))
controller.start()
print("ready", flush=True)
while not done.wait(0.2):
    pass
controller.stop()
print(json.dumps({"received": Sink.received, "unique_message_ids": len(Sink.ids)}), flush=True)
"""
"""An aiosmtpd server accepting every message and counting distinct ``Message-ID`` s, in its own process so
that its work does not share the interpreter lock with the senders measured."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def smtp_sink(port: int) -> Iterator[dict[str, Any]]:
    """The sink on ``HOST:port`` for the duration; the mapping holds its counts once it has stopped."""
    proc = subprocess.Popen([sys.executable, "-c", SINK, HOST, str(port)], stdout=subprocess.PIPE, text=True)
    counts: dict[str, Any] = {}
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("the SMTP sink did not start")
        yield counts
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=60)
            counts.update(json.loads(out.strip().splitlines()[-1]))
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            proc.kill()
            proc.wait()


async def bounded(calls: Sequence[Callable[[], Awaitable[Any]]], concurrency: int,
                  deadline: float) -> tuple[int, int, float]:
    """Run ``calls`` ``concurrency`` at a time until done or ``deadline``; (succeeded, failed, seconds)."""
    position, ok, failed = 0, 0, 0

    async def lane() -> None:
        nonlocal position, ok, failed
        while position < len(calls) and time.monotonic() < deadline:
            call = calls[position]
            position += 1
            try:
                await call()
                ok += 1
            except Exception:
                failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return ok, failed, time.perf_counter() - started


def smtp_phase(args: argparse.Namespace) -> dict[str, Any]:
    import aiosmtplib

    port = free_port()
    settings = SmtpSettings(HOST, port, SENDER, starttls=False, timeout=30.0)
    adapter = SmtpChannel(settings)
    address = sender_address(SENDER)

    def messages(run: str, count: int) -> list[Message]:
        return [Message(f"{run}-{i}", f"p{i}@bench.example", subject="Ada, a reminder",
                        text="Desk Lamp is still waiting for you.\n" * 20,
                        unsubscribe_url=f"https://shop.example/u/p{i}") for i in range(count)]

    async def measure(run: str, count: int, peer: bool) -> dict[str, Any]:
        batch = messages(run, count)
        calls: list[Callable[[], Awaitable[Any]]]
        if peer:
            mails = [(build_email(m, SENDER, int(now_ms())), m.to) for m in batch]
            calls = [lambda mail=mail, to=to: aiosmtplib.send(  # type: ignore[misc]
                mail, sender=address, recipients=[to], hostname=HOST, port=port, start_tls=False, timeout=30.0)
                     for mail, to in mails]
        else:
            calls = [lambda m=m: adapter.send(m) for m in batch]  # type: ignore[misc]
        ok, failed, secs = await bounded(calls, args.smtp_concurrency, time.monotonic() + args.max_seconds)
        return {"sent": ok, "failed": failed, "seconds": round(secs, 3), "per_s": round(ok / secs, 1)}

    async def main() -> list[dict[str, Any]]:
        await measure("warm-peer", 100, True)
        await measure("warm-adapter", 100, False)
        rounds: list[dict[str, Any]] = []
        for r in range(args.smtp_rounds):
            peer = await measure(f"peer{r}", args.smtp_messages, True)
            ours = await measure(f"adapter{r}", args.smtp_messages, False)
            rounds.append({"peer": peer, "adapter": ours})
        return rounds

    with smtp_sink(port) as sink:
        rounds = asyncio.run(main())
    batch = messages("build", min(args.smtp_messages, 2_000))
    started = time.perf_counter()
    for m in batch:
        build_email(m, SENDER, int(now_ms())).as_bytes()
    build_rate = len(batch) / (time.perf_counter() - started)
    peer_rate = sum(r["peer"]["sent"] for r in rounds) / sum(r["peer"]["seconds"] for r in rounds)
    ours_rate = sum(r["adapter"]["sent"] for r in rounds) / sum(r["adapter"]["seconds"] for r in rounds)
    expected = 200 + 2 * args.smtp_rounds * args.smtp_messages
    return {"messages": args.smtp_messages, "concurrency": args.smtp_concurrency, "rounds": rounds,
            "peer_per_s": round(peer_rate, 1), "adapter_per_s": round(ours_rate, 1),
            "ratio": round(ours_rate / peer_rate, 3), "build_email_per_s": round(build_rate, 1), "sink": sink,
            "all_received": sink.get("received") == sink.get("unique_message_ids") == expected}


# --- report ---------------------------------------------------------------------------------

def report(r: dict[str, Any]) -> None:
    rows: list[tuple[str, str, str]] = []
    for tag in ("dispatch", "dispatch_background"):
        if tag not in r:
            continue
        d = r[tag]
        name = "" if tag == "dispatch" else f", {d['background_timers']:,} pending timers"
        o, b = d["offered"], d["backlog"]
        rows.append((f"offered {o['offered_per_s']:,.0f} timers/s{name} (timers/s)",
                     f"{o['processed_per_s'] or 0:,.0f}", f"{o['delivered']:,}/{o['timers']:,} delivered"))
        rows.append(("  timer lateness (run_due commit - due)",
                     f"p50 {o['timer_p50_ms']} ms, p99 {o['timer_p99_ms']} ms", f"max {o['timer_max_ms']} ms"))
        rows.append(("  delivery lateness (dispatch commit - due)",
                     f"p50 {o['delivery_p50_ms']} ms, p99 {o['delivery_p99_ms']} ms", f"max {o['delivery_max_ms']} ms"))
        rows.append((f"backlog of {b['timers']:,} due at once{name} (timers/s)", f"{b['processed_per_s'] or 0:,.0f}",
                     f"delivery p99 {b['delivery_p99_ms']} ms"))
        x = d["exactly_once"]
        rows.append(("  delivered once per enrollment", str(x["ok"]),
                     f"{x['delivered_keys']:,} keys, {x['channel_calls']:,} calls, {x['repeats']} repeats, "
                     f"{x['sent_rows']:,} sent rows"))
    if "slowdown" in r:
        s = r["slowdown"]
        rows.append(("backlog rate with pending timers / without (median)", f"{s['backlog_rate_ratio']}",
                     f"slowdown {s['backlog_slowdown_pct']} %; ratios {s['ratios']}"))
    if "enroll" in r:
        e = r["enroll"]
        rows.append(("JourneyEngine.enroll, 100 per transaction (/s)", f"{e['per_s']:,.0f}", f"{e['enrolled']:,}"))
    if "smtp" in r:
        s = r["smtp"]
        rows.append((f"SMTP bare aiosmtplib, {s['concurrency']} concurrent (msg/s)", f"{s['peer_per_s']:,.0f}", ""))
        rows.append((f"SMTP rapport SmtpChannel, {s['concurrency']} concurrent (msg/s)", f"{s['adapter_per_s']:,.0f}",
                     f"{s['ratio']:.2f} of the peer; all received once: {s['all_received']}"))
        rows.append(("  build_email + serialise alone, one thread (msg/s)", f"{s['build_email_per_s']:,.0f}", ""))
    width = max((len(a) for a, _, _ in rows), default=0)
    print(f"\n{r['backend']} — {r['machine']['cpus']} CPUs — {r['date']}")
    for a, b, c in rows:
        print(f"  {a:<{width}}  {b:>30}  {c}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--postgres-url", default=os.environ.get("RAPPORT_BENCH_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/postgres"),
                    help="admin URL; a database is created for each measurement and dropped after")
    ap.add_argument("--enrollments", type=int, default=50_000, help="timers falling due over --spread seconds")
    ap.add_argument("--spread", type=float, default=10.0, help="seconds over which those timers fall due")
    ap.add_argument("--drain", type=int, default=20_000, help="timers due at one instant after the spread")
    ap.add_argument("--gap", type=float, default=5.0, help="seconds from the end of the spread to the backlog")
    ap.add_argument("--lead", type=float, default=10.0, help="seconds from the end of setup to the first due timer")
    ap.add_argument("--background", type=int, default=1_000_000, help="pending timers due in 30 days, phase 2")
    ap.add_argument("--run-batch", type=int, default=500, help="run_due limit per call")
    ap.add_argument("--send-batch", type=int, default=500, help="dispatch limit per call")
    ap.add_argument("--enroll", type=int, default=5_000, help="enrollments through JourneyEngine.enroll")
    ap.add_argument("--smtp-messages", type=int, default=2_000)
    ap.add_argument("--smtp-concurrency", type=int, default=16)
    ap.add_argument("--smtp-rounds", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1,
                    help="run phases 1 and 2 this many times, alternating; the slowdown is the median ratio")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="time bound of every loop")
    ap.add_argument("--skip", action="append", default=[], choices=("dispatch", "background", "enroll", "smtp"))
    ap.add_argument("--label", default="", help="added to the result file name")
    args = ap.parse_args()
    if args.enrollments < 1 or args.spread <= 0 or args.repeat < 1:
        ap.error("--enrollments and --repeat must be at least 1 and --spread positive")
    run = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "backend": args.backend,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "args": {k: v for k, v in vars(args).items() if k != "postgres_url"}, "code": code_version(),
    }
    with tempfile.TemporaryDirectory(prefix="rapport-bench-") as tmp:
        work = Path(tmp)
        pairs: list[tuple[float, float]] = []
        for r in range(args.repeat):
            suffix = f"-{r}" if r else ""
            if "dispatch" not in args.skip:
                with database(args.backend, args.postgres_url, work, f"dispatch{r}") as url:
                    base = dispatch_phase(args, url, work / f"dispatch-data{r}", 0)
                results.setdefault("dispatch", base)
                results.setdefault("dispatch_runs", []).append(base)
                print(f"dispatch{suffix}: {json.dumps(base)}", flush=True)
            if "background" not in args.skip:
                with database(args.backend, args.postgres_url, work, f"background{r}") as url:
                    loaded = dispatch_phase(args, url, work / f"background-data{r}", args.background)
                results.setdefault("dispatch_background", loaded)
                results.setdefault("dispatch_background_runs", []).append(loaded)
                print(f"dispatch with background{suffix}: {json.dumps(loaded)}", flush=True)
            if "dispatch" not in args.skip and "background" not in args.skip:
                a, b = base["backlog"]["processed_per_s"], loaded["backlog"]["processed_per_s"]
                if a and b:
                    pairs.append((a, b))
        if pairs:
            ratios = sorted(b / a for a, b in pairs)
            median = statistics.median(ratios)
            results["slowdown"] = {"backlog_rate_ratio": round(median, 3),
                                   "backlog_slowdown_pct": round(100 * (1 - median), 1),
                                   "ratios": [round(x, 3) for x in ratios],
                                   "offered_delivery_p99_ms": [results[t]["offered"]["delivery_p99_ms"]
                                                               for t in ("dispatch", "dispatch_background")]}
        if "enroll" not in args.skip:
            with database(args.backend, args.postgres_url, work, "enroll") as url:
                results["enroll"] = enroll_phase(args, url, work / "enroll-data")
            print(f"enroll: {results['enroll']}", flush=True)
    if "smtp" not in args.skip:
        results["smtp"] = smtp_phase(args)
        print(f"smtp: {json.dumps(results['smtp'])}", flush=True)
    report(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"journeys-{args.backend}-{run}{'-' + args.label if args.label else ''}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
