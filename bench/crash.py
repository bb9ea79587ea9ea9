"""Crash benchmark: ``kill -9`` the server under concurrent ingestion and prove nothing acknowledged is lost.

Each round, in a new workspace (created with the CLI) on one database:

1. a fixed set of users is identified; half grant analytics consent through the identify's
   ``context.consent``, the other half through ``POST /api/v1/consent``;
2. N client threads post gzip ``/v1/batch`` requests with unique message ids (mostly
   ``Order Completed`` with a revenue, some ``Product Viewed``) and record every batch answered 200
   (acknowledged); a batch whose request failed is "in doubt" (it may or may not be stored);
3. the server is killed with SIGKILL at a random moment while requests are in flight, and restarted;
4. the in-doubt batches are retried, as the SDKs do, and a sample of acknowledged batches is sent
   again (both must be stored once: dedupe on ``messageId``);
5. through the admin API: every acknowledged message is stored exactly once on its user's profile,
   nothing else is there, and each user's ``order_count`` (and ``revenue_total``) equals what the
   user's distinct stored ``Order Completed`` events add up to.

A summary line per round and a total; the exit status is 1 on any violation. Loopback only; every
loop is bounded in time and count. Run ``python bench/crash.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import math
import random
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _server
import httpx
import orjson

ORDER = "Order Completed"
MAX_PAGES = 2_000
"""Timeline pages read per profile at most (500 events each)."""


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Sent:
    """One batch as sent: its gzip body and what it holds."""

    body: bytes
    messages: list[tuple[str, str, str, float]]
    """(messageId, userId, event, revenue) per message."""


@dataclass(slots=True)
class Ledger:
    """What the clients know: batches acknowledged (200) and batches in doubt (no answer or an error)."""

    acked: list[Sent] = field(default_factory=list)
    in_doubt: list[Sent] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    """Answers other than 200 (or 429/503 with back-off) from a live server: valid batches must be taken."""
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(slots=True)
class Scan:
    """What the admin API shows of one round's users."""

    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    stored: Counter[str] = field(default_factory=Counter)
    """How many times each message id is stored (on any of the users' profiles)."""
    owner: dict[str, str] = field(default_factory=dict)
    orders: dict[str, dict[str, float]] = field(default_factory=dict)
    """user -> distinct stored Order Completed message id -> revenue."""


@dataclass(slots=True)
class RoundResult:
    number: int
    killed_after: float = 0.0
    acked_batches: int = 0
    acked_events: int = 0
    in_doubt_batches: int = 0
    in_doubt_committed: int = 0
    """Batches in doubt found stored after the restart: committed, then killed before the answer."""
    resent: int = 0
    restart_s: float = 0.0
    verify_s: float = 0.0
    stored: int = 0
    orders: int = 0
    violations: list[str] = field(default_factory=list)


class Crash:
    def __init__(self, args: argparse.Namespace, server: _server.Server, env: dict[str, str]) -> None:
        self.args = args
        self.server = server
        self.env = env
        self.rng = random.Random(args.seed)
        self.run_id = secrets.token_hex(4)

    # --- HTTP ---------------------------------------------------------------------------------

    @staticmethod
    def batch_body(messages: list[dict[str, Any]]) -> bytes:
        return gzip.compress(orjson.dumps({"batch": messages, "sentAt": iso_now()}), compresslevel=5)

    def post_batch(self, client: httpx.Client, write_key: str, body: bytes) -> httpx.Response:
        auth = base64.b64encode(f"{write_key}:".encode()).decode()
        return client.post(f"{self.server.url}/v1/batch", content=body, headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip", "Authorization": f"Basic {auth}"})

    # --- one round ------------------------------------------------------------------------------

    def round(self, number: int) -> RoundResult:
        result = RoundResult(number)
        ws = _server.create_workspace(self.env, f"crash-{self.run_id}-{number}")
        users = [f"r{number}-user-{i}" for i in range(self.args.users)]
        ledger = Ledger()
        with httpx.Client(timeout=self.args.request_timeout) as client:
            setup = self.grant_consent(client, ws, users)
            if setup:
                result.violations.append(setup)
                return result
            go, stop = threading.Event(), threading.Event()
            deadline = time.monotonic() + self.args.max_kill + 60
            clients = [httpx.Client(timeout=self.args.request_timeout) for _ in range(self.args.threads)]
            threads = [threading.Thread(target=self.load, args=(t, clients[t], number, ws["write_key"], users, ledger,
                                                                 go, stop, deadline), name=f"load-{t}", daemon=True)
                       for t in range(self.args.threads)]
            for t in threads:
                t.start()
            started = time.monotonic()
            go.set()
            time.sleep(self.rng.uniform(self.args.min_kill, self.args.max_kill))
            self.server.kill()
            result.killed_after = time.monotonic() - started
            stop.set()
            for t in threads:
                t.join(timeout=self.args.request_timeout + 5)
            for c in clients:
                c.close()
            if any(t.is_alive() for t in threads):
                result.violations.append("a client thread did not stop after the kill")
                return result
            result.violations.extend(f"a valid batch was refused: {r}" for r in ledger.refusals[:5])
            result.acked_batches = len(ledger.acked)
            result.acked_events = sum(len(s.messages) for s in ledger.acked)
            result.in_doubt_batches = len(ledger.in_doubt)

            result.restart_s = self.server.start(ready_timeout=self.args.start_timeout)
            verify_started = time.monotonic()
            self.check_after_restart(self.scan(client, ws, users, result.violations), ledger, result)
            result.verify_s = time.monotonic() - verify_started

            # Retry what was in doubt (as an SDK does) and resend some acknowledged batches.
            again = ledger.in_doubt + self.rng.sample(ledger.acked, min(self.args.resend, len(ledger.acked)))
            for sent in again:
                res = self.post_batch(client, ws["write_key"], sent.body)
                if res.status_code != 200:
                    result.violations.append(f"resent batch refused after restart: {res.status_code} {res.text[:200]}")
                    return result
            result.resent = len(again)

            verify_started = time.monotonic()
            expected = ledger.acked + ledger.in_doubt  # all acknowledged now
            self.check_final(self.scan(client, ws, users, result.violations), users, expected, result)
            result.verify_s += time.monotonic() - verify_started
        return result

    def grant_consent(self, client: httpx.Client, ws: dict[str, str], users: list[str]) -> str | None:
        """Identify every user; even ones grant analytics in the identify, odd ones through the admin API."""
        messages = []
        for i, user in enumerate(users):
            msg: dict[str, Any] = {"type": "identify", "userId": user, "messageId": f"{user}-identify",
                                   "timestamp": iso_now(), "traits": {"email": f"{user}@crash.example"}}
            if i % 2 == 0:
                msg["context"] = {"consent": {"categoryPreferences": {"Analytics": True}}}
            messages.append(msg)
        res = self.post_batch(client, ws["write_key"], self.batch_body(messages))
        if res.status_code != 200:
            return f"setup identify refused: {res.status_code} {res.text[:200]}"
        for user in users[1::2]:
            res = client.post(f"{self.server.url}/api/v1/consent",
                              headers={"Authorization": f"Bearer {ws['admin_token']}"},
                              json={"identifiers": {"user_id": user}, "purpose": "analytics", "state": "granted",
                                    "source": "crash-benchmark"})
            if res.status_code != 201:
                return f"consent for {user} refused: {res.status_code} {res.text[:200]}"
        return None

    def load(self, thread: int, client: httpx.Client, number: int, write_key: str, users: list[str], ledger: Ledger,
             go: threading.Event, stop: threading.Event, deadline: float) -> None:
        """One client: batches back to back until the server is gone (or the round's bounds are reached)."""
        rng = random.Random(f"{self.args.seed}-{number}-{thread}")
        if go.wait(timeout=30):
            for n in range(self.args.max_batches):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                messages: list[dict[str, Any]] = []
                meta: list[tuple[str, str, str, float]] = []
                for i in range(rng.randint(1, self.args.batch_size)):
                    user = rng.choice(users)
                    mid = f"{self.run_id}-{number}-{thread}-{n}-{i}"
                    if rng.random() < 0.8:
                        revenue = round(rng.uniform(5, 200), 2)
                        messages.append({"type": "track", "event": ORDER, "userId": user, "messageId": mid,
                                         "timestamp": iso_now(),
                                         "properties": {"order_id": mid, "revenue": revenue, "currency": "EUR"}})
                        meta.append((mid, user, ORDER, revenue))
                    else:
                        messages.append({"type": "track", "event": "Product Viewed", "userId": user,
                                         "messageId": mid, "timestamp": iso_now(), "properties": {"sku": "tea-01"}})
                        meta.append((mid, user, "Product Viewed", 0.0))
                sent = Sent(self.batch_body(messages), meta)
                try:
                    res = self.post_batch(client, write_key, sent.body)
                except httpx.HTTPError:
                    with ledger.lock:
                        ledger.in_doubt.append(sent)
                    return  # the server is gone
                with ledger.lock:
                    if res.status_code == 200:
                        ledger.acked.append(sent)
                        continue
                    ledger.in_doubt.append(sent)
                    if res.status_code not in (429, 503):
                        ledger.refusals.append(f"HTTP {res.status_code}: {res.text[:200]}")
                time.sleep(0.2)  # refused or overloaded: back off; the batch is retried after the restart

    # --- verification ---------------------------------------------------------------------------

    def scan(self, client: httpx.Client, ws: dict[str, str], users: list[str], problems: list[str]) -> Scan:
        """Every user's profile through the admin API: its stored events and computed traits."""
        headers = {"Authorization": f"Bearer {ws['admin_token']}"}
        out = Scan()
        for user in users:
            res = client.get(f"{self.server.url}/api/v1/profiles/lookup", params={"user_id": user}, headers=headers)
            if res.status_code != 200:
                problems.append(f"{user}: lookup {res.status_code} {res.text[:200]}")
                continue
            profile = res.json()
            out.profiles[user] = profile
            orders = out.orders[user] = {}
            cursor: str | None = None
            for _ in range(MAX_PAGES):
                params: dict[str, Any] = {"limit": 500}
                if cursor:
                    params["cursor"] = cursor
                page = client.get(f"{self.server.url}/api/v1/profiles/{profile['id']}/events", params=params,
                                  headers=headers)
                if page.status_code != 200:
                    problems.append(f"{user}: timeline {page.status_code} {page.text[:200]}")
                    break
                body = page.json()
                for event in body["events"]:
                    mid = event["message_id"]
                    out.stored[mid] += 1
                    out.owner[mid] = user
                    if event["type"] == "track" and event["name"] == ORDER:
                        orders[mid] = float(event["message"]["properties"]["revenue"])
                cursor = body["next"]
                if not cursor:
                    break
            else:
                problems.append(f"{user}: timeline longer than {MAX_PAGES} pages")
        return out

    @staticmethod
    def check_after_restart(scan: Scan, ledger: Ledger, result: RoundResult) -> None:
        """Before anything is resent: every acknowledged message survived the kill, once; a batch in
        doubt is stored whole or not at all."""
        lost = [m for sent in ledger.acked for m, *_ in sent.messages if scan.stored[m] != 1]
        if lost:
            result.violations.append(f"{len(lost)} acknowledged message(s) not stored exactly once after the "
                                     f"crash, e.g. {lost[:3]}")
        for sent in ledger.in_doubt:
            present = sum(1 for m, *_ in sent.messages if scan.stored[m])
            if present == len(sent.messages):
                result.in_doubt_committed += 1
            elif present:
                result.violations.append(f"a batch in doubt is partly stored: {present} of {len(sent.messages)}")

    @staticmethod
    def check_final(scan: Scan, users: list[str], expected: list[Sent], result: RoundResult) -> None:
        """After the resends: each message stored once on its user's profile; computed traits exact."""
        problems = result.violations
        want: dict[str, tuple[str, str, float]] = {}
        for sent in expected:
            for mid, user, event, revenue in sent.messages:
                want[mid] = (user, event, revenue)
        for user in users:
            profile = scan.profiles.get(user)
            if profile is None:
                continue  # reported by the scan
            orders = scan.orders[user]
            computed = profile["computed"]
            if not profile["consent"].get("analytics", {}).get("allowed"):
                problems.append(f"{user}: analytics consent is not granted: {profile['consent'].get('analytics')}")
            if computed.get("order_count") != len(orders):
                problems.append(f"{user}: order_count {computed.get('order_count')} but {len(orders)} distinct "
                                f"stored {ORDER} events")
            revenue = sum(orders.values())
            total = computed.get("revenue_total") or 0.0
            if not math.isclose(float(total), revenue, rel_tol=1e-9, abs_tol=1e-6):
                problems.append(f"{user}: revenue_total {total} but stored orders add up to {revenue:.2f}")
            sent_orders = {m for m, (u, e, _) in want.items() if u == user and e == ORDER}
            if set(orders) != sent_orders:
                problems.append(f"{user}: {len(orders)} stored {ORDER} events but {len(sent_orders)} acknowledged")
            result.orders += len(orders)
        setup = {f"{u}-identify" for u in users}
        missing = [m for m in want if scan.stored[m] == 0]
        doubled = [m for m, n in scan.stored.items() if n > 1]
        unexpected = [m for m in scan.stored if m not in want and m not in setup]
        misplaced = [m for m, (u, _, _) in want.items() if m in scan.owner and scan.owner[m] != u]
        for label, ids in (("acknowledged but not stored", missing), ("stored more than once", doubled),
                           ("stored but never sent", unexpected), ("stored on another user's profile", misplaced)):
            if ids:
                problems.append(f"{len(ids)} message(s) {label}, e.g. {sorted(ids)[:3]}")
        result.stored = sum(scan.stored.values())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="kill -9 rapport serve under load; verify acknowledged = stored once.")
    p.add_argument("--rounds", type=int, default=20, help="crash rounds (default 20)")
    p.add_argument("--threads", type=int, default=8, help="concurrent client threads (default 8)")
    p.add_argument("--users", type=int, default=12, help="users per round, all with analytics consent (default 12)")
    p.add_argument("--batch-size", type=int, default=40, help="messages per batch at most (default 40)")
    p.add_argument("--max-batches", type=int, default=2_000, help="batches per thread per round at most")
    p.add_argument("--min-kill", type=float, default=0.3, help="earliest kill, seconds after the load starts")
    p.add_argument("--max-kill", type=float, default=2.0, help="latest kill, seconds after the load starts")
    p.add_argument("--resend", type=int, default=25, help="acknowledged batches resent after each restart")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    p.add_argument("--request-timeout", type=float, default=15.0)
    p.add_argument("--start-timeout", type=float, default=60.0, help="seconds to wait for /healthz")
    p.add_argument("--time-limit", type=float, default=1800.0, help="stop starting rounds after this many seconds")
    db = p.add_mutually_exclusive_group()
    db.add_argument("--postgres", metavar="ADMIN_URL",
                    help="run on PostgreSQL: a fresh database is created on this server and dropped at the end")
    db.add_argument("--database-url", help="use this (empty or disposable) database as is")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="RAPPORT_DATA_DIR (master key file) to reuse with --database-url (default: a new one)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (database, logs)")
    args = p.parse_args(argv)
    if args.seed is None:
        args.seed = secrets.randbelow(2**31)
    if args.rounds < 1 or args.threads < 1 or args.users < 1 or args.batch_size < 1:
        p.error("--rounds, --threads, --users and --batch-size must be at least 1")
    if not 0 <= args.min_kill <= args.max_kill:
        p.error("need 0 <= --min-kill <= --max-kill")
    return args


@contextlib.contextmanager
def database(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[str, str]]:
    """(URL, label) of the database for the run."""
    if args.postgres:
        with _server.fresh_postgres(args.postgres, prefix="rapport_crash") as url:
            yield url, "postgres"
    elif args.database_url:
        yield args.database_url, "sqlite" if args.database_url.startswith("sqlite") else "postgres"
    else:
        yield f"sqlite:///{workdir / 'rapport.db'}", "sqlite"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="rapport-crash-"))
    began = time.monotonic()
    results: list[RoundResult] = []
    clean_exit: int | None = None
    try:
        with database(args, workdir) as (url, label):
            env = _server.server_env(url, args.data_dir or workdir / "data")
            print(f"crash benchmark: {args.rounds} round(s) on {label}, {args.threads} threads, {args.users} users, "
                  f"kill after {args.min_kill}-{args.max_kill}s, seed {args.seed}, work dir {workdir}", flush=True)
            with _server.Server(env, workdir / "server.log") as server:
                crash = Crash(args, server, env)
                for number in range(1, args.rounds + 1):
                    if time.monotonic() - began > args.time_limit:
                        print(f"time limit of {args.time_limit:.0f}s reached before round {number}", flush=True)
                        break
                    if not server.running:
                        server.start(ready_timeout=args.start_timeout)
                    try:
                        r = crash.round(number)
                    except Exception as exc:  # a harness failure is a failed round, reported as such
                        r = RoundResult(number, violations=[f"round aborted: {type(exc).__name__}: {exc}"])
                    results.append(r)
                    status = "OK" if not r.violations else f"FAIL ({len(r.violations)})"
                    print(f"round {number:>3}/{args.rounds}  killed after {r.killed_after:4.2f}s  "
                          f"acked {r.acked_batches:>4} batches / {r.acked_events:>6} events  "
                          f"in doubt {r.in_doubt_batches:>2} ({r.in_doubt_committed} committed)  "
                          f"resent {r.resent:>3}  stored {r.stored:>6}  "
                          f"orders {r.orders:>6}  restart {r.restart_s:4.1f}s  verify {r.verify_s:4.1f}s  {status}",
                          flush=True)
                    for v in r.violations[:10]:
                        print(f"    violation: {v}", flush=True)
                    if r.violations and not server.running:
                        print(server.log_tail(20), flush=True)
                if server.running:
                    clean_exit = server.stop(timeout=30)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    violations = sum(len(r.violations) for r in results)
    if clean_exit not in (0, None):
        violations += 1
        print(f"violation: the server exited with {clean_exit} after the final SIGTERM")
    print(f"total: {len(results)} round(s), {sum(r.acked_events for r in results)} events acknowledged before "
          f"the kills, {sum(r.in_doubt_batches for r in results)} batches in doubt "
          f"({sum(r.in_doubt_committed for r in results)} of them committed before the kill; all retried), "
          f"{sum(r.resent for r in results)} batches resent, {violations} violation(s), "
          f"{time.monotonic() - began:.1f}s, seed {args.seed} -> {'PASS' if violations == 0 else 'FAIL'}", flush=True)
    return 0 if violations == 0 and results else 1


if __name__ == "__main__":
    sys.exit(main())
