"""Journey crash benchmark: ``kill -9`` journey workers while enrollments pass a send step, and prove every
intended email reached the SMTP server once (counted by ``Message-ID`` at the server), none lost.

One run, on one database (SQLite file or a PostgreSQL URL):

1. a real SMTP server (aiosmtpd) on a loopback port records every message it accepts: its
   ``Message-ID`` and envelope recipient;
2. a workspace (created with the CLI) gets a ``Channel`` (SMTP to that server), a ``Template`` and a
   ``Journey`` entered on ``Crash Signup`` whose step sends an email; ``--enrollments`` people are
   identified (email trait, consent for analytics and email through ``context.consent``) and send
   ``Crash Signup``, through the tracking API of an in-process app (its worker off): nothing is
   enrolled yet, the events wait in the journey queue;
3. ``--workers`` ``rapport worker`` processes (one on SQLite; several on PostgreSQL) feed the queue to
   the journey, step the enrollments and send; every ``--min-kill``..``--max-kill`` seconds one of them
   is killed with SIGKILL and restarted at once, ``--kills`` times (the last kills land while mail is
   still flowing; each kill waits for a message to arrive after the previous one, so that it lands while
   mail flows), with ``RAPPORT_SEND_LEASE_SECONDS=--lease`` so that sends a killed worker held are
   taken over after that long;
4. after the kills, the workers run until the send log holds every send as ``sent`` (or ``--timeout``).

Checks (exit status 1 on any violation): every person enrolled once; the SMTP server holds exactly
``--enrollments`` distinct ``Message-ID``s, one per intended recipient, each equal to the one the send
log recorded for that person, and no other; a ``Message-ID`` the server accepted more than once (a
worker killed after the server accepted the message and before the send log recorded it; the retry
carries the same ``Message-ID``, so a receiver that honours it keeps one copy) must belong to a send the
log marks as retried after an attempt left in doubt. Reported: kills, messages/s, deliveries, distinct
``Message-ID``s, repeated deliveries, sends retried in doubt.

    .venv/bin/python bench/journey_crash.py --database-url sqlite:////tmp/jc/rapport.db --data-dir /tmp/jc
    .venv/bin/python bench/journey_crash.py --database-url postgresql://postgres@127.0.0.1:5432/test_jc \\
        --data-dir /tmp/jc-pg --workers 2

Loopback only; every loop is bounded in time and count.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import _server
import orjson
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from rapport.core import Rapport
from rapport.settings import load_settings
from rapport.storage.sql import journeys as journeys_sql

EVENT = "Crash Signup"
DOMAIN = "crash.example"
IN_DOUBT_NOTE = "sent again with the same idempotency key"


@dataclass
class Sink:
    """An aiosmtpd handler that records (Message-ID, recipient) of every message it accepts."""

    received: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        headers = BytesHeaderParser().parsebytes(content)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append((str(headers.get("Message-ID", "")), rcpt.lower()))
        return "250 OK"

    def snapshot(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.received)


def resources(smtp_port: int) -> str:
    return f"""
kind: Channel
name: email
type: smtp
host: 127.0.0.1
port: {smtp_port}
from: "Shop <hello@shop.example>"
---
kind: Template
name: welcome
channel: email
subject: "Welcome, {{{{ traits.first_name | default: 'friend' }}}}"
text: "Thanks for signing up on {{{{ event.plan }}}}."
---
kind: Journey
name: crash_welcome
purpose: marketing_email
entry: {{event: {EVENT}}}
steps:
  - send: {{channel: email, template: welcome}}
"""


def ingest(env: dict[str, str], ws: dict[str, str], smtp_port: int, people: int) -> None:
    """Apply the resources and send every person's identify and signup through an in-process app whose
    worker is off (the ``rapport worker`` processes do the journey work)."""
    from fastapi.testclient import TestClient

    from rapport.api.app import create_app

    rapport = Rapport(load_settings(env))
    try:
        with TestClient(create_app(rapport, worker=False)) as client:
            admin = {"Authorization": f"Bearer {ws['admin_token']}"}
            res = client.post("/api/v1/apply", content=resources(smtp_port),
                              headers={**admin, "Content-Type": "application/yaml"})
            if res.status_code != 200:
                raise RuntimeError(f"apply failed: {res.status_code} {res.text[:500]}")
            consent = {"consent": {"categoryPreferences": {"Analytics": True, "Email": True}}}
            batch: list[dict[str, Any]] = []
            for i in range(people):
                user = f"u{i:05d}"
                batch.append({"type": "identify", "userId": user, "messageId": f"id-{user}", "context": consent,
                              "traits": {"email": f"{user}@{DOMAIN}", "first_name": f"P{i}"}})
                batch.append({"type": "track", "userId": user, "messageId": f"signup-{user}", "event": EVENT,
                              "properties": {"plan": "pro" if i % 3 == 0 else "basic"}})
                if len(batch) >= 400 or i == people - 1:
                    res = client.post("/v1/batch", content=orjson.dumps({"batch": batch}),
                                      auth=(ws["write_key"], ""), headers={"Content-Type": "application/json"})
                    if res.status_code != 200 or res.json().get("errors"):
                        raise RuntimeError(f"batch refused: {res.status_code} {res.text[:500]}")
                    batch = []
    finally:
        rapport.close()


class Workers:
    """``rapport worker`` child processes, each logging to its own file."""

    def __init__(self, env: dict[str, str], logs: Path, count: int) -> None:
        self.env, self.logs, self.count = env, logs, count
        self.procs: list[Any] = [None] * count
        self.started = 0

    def start(self, slot: int) -> None:
        import subprocess

        self.started += 1
        log = (self.logs / f"worker-{slot}.log").open("ab")
        self.procs[slot] = subprocess.Popen([*_server.rapport_command(), "worker"], env=self.env,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def start_all(self) -> None:
        for slot in range(self.count):
            self.start(slot)

    def kill(self, slot: int) -> None:
        proc = self.procs[slot]
        if proc is not None and proc.poll() is None:
            proc.kill()  # SIGKILL: no shutdown code runs
        if proc is not None:
            proc.wait(timeout=30)

    def stop_all(self) -> list[int]:
        codes = []
        for proc in self.procs:
            if proc is None:
                continue
            if proc.poll() is None:
                proc.terminate()
            try:
                codes.append(proc.wait(timeout=60))
            except Exception:
                proc.kill()
                codes.append(proc.wait(timeout=30))
        return codes

    def crashed(self) -> list[str]:
        """Workers that exited on their own (not killed by us): a bug."""
        return [f"worker {slot} exited with {p.returncode}" for slot, p in enumerate(self.procs)
                if p is not None and p.poll() is not None and p.returncode not in (-9,)]


def send_log(env: dict[str, str], ws_id: str) -> list[tuple[str, str, str, str]]:
    """(profile id, status, provider id, detail) of every send of the workspace."""
    rapport = Rapport(load_settings(env))
    try:
        rows = rapport.db.read(lambda c: c.all(
            "SELECT profile_id, status, provider_id, detail FROM journey_sends WHERE workspace_id = ?", (ws_id,)))
    finally:
        rapport.close()
    return [(str(r[0]), str(r[1]), str(r[2] or ""), str(r[3] or "")) for r in rows]


def status_counts(env: dict[str, str], ws_id: str) -> Counter[str]:
    return Counter(status for _p, status, _id, _d in send_log(env, ws_id))


def enrollment_count(env: dict[str, str], ws_id: str) -> tuple[int, int]:
    rapport = Rapport(load_settings(env))
    try:
        rows = rapport.db.read(lambda c: journeys_sql.enrollment_counts(c, ws_id))
    finally:
        rapport.close()
    total = sum(int(r[3]) for r in rows)
    return total, len({(r[0], r[1]) for r in rows})


def run(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="rapport-journey-crash-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    database_url = args.database_url or f"sqlite:///{data_dir / 'rapport.db'}"
    sqlite = database_url.startswith("sqlite:")
    workers = 1 if sqlite else args.workers
    rng = random.Random(args.seed)
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=_server.free_port())
    controller.start()
    problems: list[str] = []
    try:
        env = _server.server_env(database_url, data_dir, {
            "RAPPORT_SEND_LEASE_SECONDS": str(args.lease), "RAPPORT_LOG_FORMAT": "plain"})
        ws = _server.create_workspace(env, f"journey-crash-{int(time.time())}")
        t0 = time.monotonic()
        ingest(env, ws, controller.port, args.enrollments)
        print(f"ingested {args.enrollments} people in {time.monotonic() - t0:.1f}s")

        pool = Workers(env, data_dir, workers)
        started = time.monotonic()
        pool.start_all()
        kills: list[tuple[float, int, int]] = []
        deadline = started + args.timeout
        last = 0
        while len(kills) < args.kills and time.monotonic() < deadline:
            time.sleep(rng.uniform(args.min_kill, args.max_kill))
            while len(sink.snapshot()) <= last and time.monotonic() < deadline:
                time.sleep(0.05)  # each kill lands while mail flows: after a message since the last one
            delivered = last = len(sink.snapshot())
            if delivered >= args.enrollments * 0.97:
                break  # no mail left to interrupt
            slot = rng.randrange(workers)
            pool.kill(slot)
            kills.append((time.monotonic() - started, slot, delivered))
            problems += pool.crashed()
            pool.start(slot)
        print(f"{len(kills)} kills: " + ", ".join(f"{at:.1f}s/w{slot}@{n}" for at, slot, n in kills))
        counts: Counter[str] = Counter()
        while time.monotonic() < deadline:
            counts = status_counts(env, ws["workspace_id"])
            if counts.get("sent", 0) >= args.enrollments and sum(counts.values()) == counts["sent"]:
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        problems += pool.crashed()
        codes = pool.stop_all()
        if any(code != 0 for code in codes):
            problems.append(f"a worker did not stop cleanly on SIGTERM: exit codes {codes}")
        time.sleep(0.2)
        problems += check(env, ws["workspace_id"], sink.snapshot(), args.enrollments, counts)
        received = sink.snapshot()
        distinct = len({mid for mid, _to in received})
        in_doubt = sum(1 for _p, status, _id, detail in send_log(env, ws["workspace_id"])
                       if status == "sent" and IN_DOUBT_NOTE in detail)
        print(f"enrollments {args.enrollments}, workers {workers} ({pool.started} started), kills {len(kills)}, "
              f"lease {args.lease}s: {elapsed:.1f}s, {distinct / elapsed:.0f} messages/s; deliveries "
              f"{len(received)}, distinct Message-IDs {distinct}, repeated deliveries {len(received) - distinct}, "
              f"sends retried in doubt {in_doubt}")
    finally:
        controller.stop()
    for problem in problems[:50]:
        print(f"violation: {problem}")
    if len(problems) > 50:
        print(f"violation: ... and {len(problems) - 50} more")
    print("-> FAIL" if problems else "-> PASS")
    return 1 if problems else 0


def check(env: dict[str, str], ws_id: str, received: list[tuple[str, str]], people: int,
          counts: Counter[str]) -> list[str]:
    problems: list[str] = []
    if counts.get("sent", 0) != people or sum(counts.values()) != people:
        problems.append(f"the send log holds {dict(counts)}; expected {people} sends, all sent")
    enrolled, _versions = enrollment_count(env, ws_id)
    if enrolled != people:
        problems.append(f"{enrolled} enrollments; expected one per person, {people}")
    intended = {f"u{i:05d}@{DOMAIN}" for i in range(people)}
    ids_by_recipient: dict[str, set[str]] = {}
    for message_id, to in received:
        ids_by_recipient.setdefault(to, set()).add(message_id)
    missing = sorted(intended - ids_by_recipient.keys())
    if missing:
        problems.append(f"{len(missing)} people never got their email, e.g. {missing[:5]}")
    strangers = sorted(ids_by_recipient.keys() - intended)
    if strangers:
        problems.append(f"mail to {len(strangers)} unintended recipients, e.g. {strangers[:5]}")
    several = {to: ids for to, ids in ids_by_recipient.items() if len(ids) > 1}
    if several:
        problems.append(f"{len(several)} people got more than one distinct Message-ID, e.g. "
                        f"{sorted(several.items())[:3]}")
    log = send_log(env, ws_id)
    logged = {provider_id for _p, status, provider_id, _d in log if status == "sent"}
    at_server = {mid for mid, _to in received}
    if logged != at_server:
        problems.append(f"Message-IDs in the send log and at the server differ: {len(logged - at_server)} only "
                        f"logged, {len(at_server - logged)} only at the server")
    retried = {provider_id for _p, status, provider_id, detail in log if status == "sent" and IN_DOUBT_NOTE in detail}
    repeated = {mid for mid, n in Counter(mid for mid, _to in received).items() if n > 1}
    unexplained = repeated - retried
    if unexplained:
        problems.append(f"{len(unexplained)} Message-IDs were delivered more than once without a send retried in "
                        f"doubt, e.g. {sorted(unexplained)[:3]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database-url", help="default: a SQLite file in --data-dir")
    p.add_argument("--data-dir", help="default: a new temporary directory")
    p.add_argument("--enrollments", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2, help="rapport worker processes on PostgreSQL (SQLite: 1)")
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--min-kill", type=float, default=0.5, help="seconds between kills, at least")
    p.add_argument("--max-kill", type=float, default=3.0, help="seconds between kills, at most")
    p.add_argument("--lease", type=float, default=10.0, help="RAPPORT_SEND_LEASE_SECONDS of the workers")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds for the workers to finish")
    p.add_argument("--seed", type=int, default=None)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
