"""Decision API benchmark: ``POST /api/v1/decide`` at a fixed rate, beside a constant endpoint of the same app.

    .venv/bin/python bench/decide.py                                    # decide beside the floor
    .venv/bin/python bench/decide.py --endpoints bare,bare-sync,healthz  # the harness without decide
    .venv/bin/python bench/decide.py --in-process                        # one decision in process, µs

One run, on a fresh SQLite database in a temporary folder:

1. A workspace. For ``decide`` (and ``--in-process``) it is made in process by ``prepare_decide``, with the
   clock set ``--seed-days`` days back: the resources of ``decide_resources`` (computed traits, content blocks,
   a model, three placements: two chosen by rules, one ranking offers by the model), then each day's events of
   ``--users`` people (``bench/workload.py``: identifies, pages, product views, orders; 60 % grant
   personalization), ``--seed-events`` in all; then ``rapport models train`` at the real time. Otherwise
   ``rapport workspace create``.
2. The server: ``bench/_decide_server.py``, which is ``rapport serve`` (same app, uvicorn settings, gc
   freeze) plus the floors (``POST /bench/bare``: ``async def`` reading the body and returning a constant;
   ``POST /bench/bare-sync``: the same as a ``def``, run in the thread pool like rapport's synchronous
   endpoints) and a middleware timing every request inside the server.
3. For each endpoint in turn: ``--warmup`` seconds of load, then ``--seconds`` seconds open loop at
   ``--rate`` requests/s (request i sent at start + i/rate whatever the server does, on keep-alive
   connections, bytes built before the clock starts), then the server's own durations for that path.
   Reported: requests sent and completed, the achieved rate, errors by status, server-side p50/p99/max
   (the middleware) and client-side p50/p99/max (from each request's scheduled send instant, so a queue
   in the server shows); then, unless ``--capacity-seconds 0``, a closed loop (``--capacity-connections``
   connections, each sending its next request when answered): the most the endpoint completes per second.

``--in-process`` times ``decide_in_process`` (one decision for one person, 3 placements) in the bench
process on a database prepared the same way, after the HTTP phases.

Endpoints: ``bare``, ``bare-sync`` (the floors), ``healthz`` (a database read in the thread pool),
``track`` (``POST /v1/track``: a durable write), ``decide``, ``decide-inline`` (the same work on the event
loop instead of the thread pool: what the hop costs). Prints a table and writes
``bench/results/decide-<time>.json``. Every loop is bounded in count and in time; only loopback is used.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen
from _server import create_workspace, free_port, server_env
from ingest import code_version, run_async, server
from workload import DAY_MS, iso, make_batches

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
HOST = "127.0.0.1"
DECIDE_PATH = "/api/v1/decide"
PLACEMENTS = ("home_hero", "cart_offer", "email_banner")
ENDPOINTS = ("bare", "bare-sync", "healthz", "track", "decide", "decide-inline")
SAMPLES = 500


# --- the decision workload ----------------------------------------------------------------------

def decide_resources() -> str:
    """What ``decide`` needs: computed traits, content blocks, a propensity model and three placements —
    ``home_hero`` and ``email_banner`` choose by rules (first match wins), ``cart_offer`` ranks offers by
    the model's calibrated propensity × the offer's value."""
    return """\
kind: ComputedTrait
name: orders_90d
event: Order Completed
aggregate: count
window: 90d
---
kind: ComputedTrait
name: revenue_total
event: Order Completed
aggregate: sum
property: revenue
---
kind: ComputedTrait
name: views_30d
event: Product Viewed
aggregate: count
window: 30d
---
kind: ComputedTrait
name: carts_30d
event: Cart Added
aggregate: count
window: 30d
---
kind: Model
name: will_order
target: {event: Order Completed, within: 7d}
features: [orders_90d, revenue_total, views_30d, carts_30d]
purpose: personalization
---
kind: ContentBlock
name: hero_default
channel: web
locale: en
body: "<h1>New arrivals are in</h1><p>Spring styles, free returns.</p>"
---
kind: ContentBlock
name: hero_vip
channel: web
locale: en
tags: [loyalty]
body: "<h1>Welcome back, {{ traits.first_name | default: 'friend' }}</h1><p>Your VIP preview is open.</p>"
---
kind: ContentBlock
name: hero_returning
channel: web
locale: en
body: "<h1>Good to see you, {{ traits.first_name | default: 'friend' }}</h1><p>Picks based on your last visit.</p>"
---
kind: ContentBlock
name: hero_new
channel: web
locale: en
tags: [acquisition]
body: "<h1>10 % off your first order</h1><p>Use code WELCOME10 at checkout.</p>"
---
kind: ContentBlock
name: offer_none
channel: web
locale: en
body: "<p>Free returns on every order.</p>"
---
kind: ContentBlock
name: offer_free_shipping
channel: web
locale: en
value: 5
body: "<p>Free shipping on this order, {{ traits.first_name | default: 'today' }}.</p>"
---
kind: ContentBlock
name: offer_ten_off
channel: web
locale: en
value: 10
body: "<p>10 % off when you check out in the next hour.</p>"
---
kind: ContentBlock
name: offer_bundle
channel: web
locale: en
value: 15
body: "<p>Add a second item and save 15 %.</p>"
---
kind: ContentBlock
name: banner_default
channel: email
locale: en
body: "<p>Our newsletter: the week's best finds.</p>"
---
kind: ContentBlock
name: banner_loyalty
channel: email
locale: en
body: "<p>{{ computed.orders_90d }} orders in 90 days: thank you! Here is double points this week.</p>"
---
kind: ContentBlock
name: banner_winback
channel: email
locale: en
body: "<p>We miss you. Come back for 15 % off.</p>"
---
kind: Placement
name: home_hero
channel: web
default: hero_default
variants:
  - {block: hero_vip, when: computed.revenue_total > 300}
  - {block: hero_returning, when: computed.orders_90d >= 1}
  - {block: hero_new, when: computed.orders_90d == 0 and computed.views_30d >= 3}
---
kind: Placement
name: cart_offer
channel: web
default: offer_none
rank:
  - {block: offer_free_shipping, model: will_order, value: 5}
  - {block: offer_ten_off, model: will_order, value: 10, when: computed.carts_30d >= 1}
  - {block: offer_bundle, model: will_order, value: 15, when: context.page == "cart"}
---
kind: Placement
name: email_banner
channel: email
default: banner_default
variants:
  - {block: banner_loyalty, when: computed.orders_90d >= 2}
  - {block: banner_winback, when: computed.orders_90d == 0 and computed.revenue_total > 0}
"""


def population(users: int, seed: int) -> list[str]:
    """The user ids decide is asked about: the people of ``bench/workload.py``, in a seeded order."""
    ids = [f"user-{u:06d}" for u in range(users)]
    random.Random(seed).shuffle(ids)
    return ids


def decide_body(user_id: str, index: int, secret: bytes | None = None) -> bytes:
    """One ``POST /api/v1/decide`` body: a known person, the three placements, a request context; with the
    workspace's identity-verification ``secret``, the ``user_hash`` a write key needs (computed as the shop's own
    server would, before the page is sent)."""
    page = ("home", "product", "cart")[index % 3]
    device = "mobile" if index % 2 else "desktop"
    body: dict[str, Any] = {"user_id": user_id, "placements": list(PLACEMENTS),
                            "context": {"page": page, "locale": "en-US", "device": device}}
    if secret is not None:
        body["user_hash"] = hmac.new(secret, user_id.encode(), hashlib.sha256).hexdigest()
    return orjson.dumps(body)


def identity_secret(rapport: Any, workspace_id: str) -> bytes:
    """The workspace's identity-verification secret, read in process."""
    from rapport.types import WorkspaceId

    rt = rapport.runtime(WorkspaceId(workspace_id))
    secret: bytes = rapport.keyring.identity_key(rt.id, rt.wrapped_key)
    return secret


def prepare_decide(url: str, data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A workspace with ``decide_resources`` and its population, made in process with the clock set in the
    past: the resources applied ``--seed-days`` days ago, then each day's events of ``--users`` people
    (``bench/workload.py``) ingested on that day, so profiles, consent and computed traits have a history
    and the model a past to learn from (training reads who existed and consented at its cutoff). Returns
    the workspace's id and write key, and what was ingested."""
    from rapport.clock import FrozenClock, parse_iso
    from rapport.core import Rapport
    from rapport.ingestion.parse import parse_batch
    from rapport.ingestion.plans import check_plans
    from rapport.profiles import backfill
    from rapport.resources import service as resources_service
    from rapport.settings import Settings
    from rapport.types import WorkspaceId

    now = int(time.time() * 1000)
    days = max(1, args.seed_days)
    per_day = max(1, args.seed_events // 100 // days)
    clock = FrozenClock(now - days * DAY_MS - 3_600_000, seed=args.seed)
    rapport = Rapport(Settings(database_url=url, data_dir=data_dir), clock=clock)
    started = time.perf_counter()
    try:
        made = rapport.create_workspace("bench")
        ws = WorkspaceId(made.workspace_id)
        rapport.db.write(lambda c: resources_service.apply(c, ws, decide_resources(), "bench", clock.now_ms()))
        rapport.invalidate(ws)
        rt = rapport.runtime(ws, fresh=True)
        rapport.db.write(lambda c: backfill.register_missing(c, rt, clock))
        while not rapport.db.write(lambda c: backfill.backfill_chunk(c, rt, rapport.keyring, clock)):
            pass
        events = 0
        for day in range(days, 0, -1):
            for body in make_batches(per_day, seed=args.seed * 1000 + day, run=f"decide{day}",
                                     now_ms=now - day * DAY_MS, users=args.users):
                payload = orjson.loads(body)
                clock.set(parse_iso(payload["sentAt"]) + 20)
                indexed, _errors = parse_batch(payload, received_at=clock.now_ms(),
                                               new_id=lambda: clock.new_id("msg"))
                accepted, _, _ = check_plans(rapport.runtime(ws).plans, indexed)
                events += rapport.ingest(ws, accepted).result().accepted
        return {"workspace_id": made.workspace_id, "write_key": made.write_key, "events": events, "days": days,
                "users": args.users, "seconds": round(time.perf_counter() - started, 1)}
    finally:
        rapport.close()


def train_model(env: dict[str, str], workspace: str) -> str:
    """Train the placements' model on the seeded population (``rapport models train``, at the real time)."""
    return cli(env, "models", "train", "will_order", "--workspace", workspace, "--json")


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(ROOT / ".venv/bin/rapport"), *args], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"rapport {' '.join(args[:2])} failed ({done.returncode}):\n{done.stdout[-2000:]}"
                         f"{done.stderr[-2000:]}")
    return done.stdout


def decide_in_process(rapport: Any, workspace_id: str, body: dict[str, Any]) -> Any:
    """One decision for ``body`` as ``POST /api/v1/decide`` makes it for a write-key caller, without HTTP:
    parse, load the person, decide the placements, queue the impressions (not waited for)."""
    service = _SERVICE[0] if _SERVICE else _decisions_service()
    return service.decide_request(rapport, workspace_id, service.parse_request(body, admin=False), full=False)


_SERVICE: list[Any] = []


def _decisions_service() -> Any:
    """``rapport.decisions.service``, imported once (outside the timed call)."""
    from rapport.decisions import service

    _SERVICE.append(service)
    return service


# --- HTTP -----------------------------------------------------------------------------------

def http_request(method: str, path: str, port: int, body: bytes = b"", *, write_key: str | None = None) -> bytes:
    """The bytes of one HTTP/1.1 keep-alive request."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
    if write_key is not None:
        head += f"Authorization: Basic {base64.b64encode(f'{write_key}:'.encode()).decode()}\r\n"
    if method == "POST":
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


def requests_for(endpoint: str, port: int, write_key: str, users: Sequence[str], count: int,
                 secret: bytes | None = None) -> tuple[str, list[bytes]]:
    """The path of ``endpoint`` and ``count`` requests to it (decide-shaped bodies for the floors; ``secret``: the
    identity-verification secret that signs each body's user id)."""
    if endpoint == "healthz":
        raw = http_request("GET", "/healthz", port)
        return "/healthz", [raw] * count
    if endpoint == "track":
        now = iso(int(time.time() * 1000))
        return "/v1/track", [http_request("POST", "/v1/track", port, orjson.dumps({
            "userId": users[i % len(users)], "event": "Product Viewed", "timestamp": now,
            "messageId": f"decide-bench-{i}", "properties": {"product_id": f"sku-{i % 5000}"}}),
            write_key=write_key) for i in range(count)]
    path = {"bare": "/bench/bare", "bare-sync": "/bench/bare-sync", "decide": DECIDE_PATH,
            "decide-inline": "/bench/decide-inline"}[endpoint]
    return path, [http_request("POST", path, port, decide_body(users[i % len(users)], i, secret), write_key=write_key)
                  for i in range(count)]


def decide_server(env: dict[str, str], port: int, log: Path) -> contextlib.AbstractContextManager[
        subprocess.Popen[bytes]]:
    """``bench/_decide_server.py`` on ``port`` until the block ends (SIGTERM, as an operator stops it)."""
    return server(env, port, log, [sys.executable, str(ROOT / "bench" / "_decide_server.py")])


def server_latencies(port: int) -> dict[str, list[int]]:
    """The server's request durations (ns) by path since the last call; starts afresh."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/bench/latencies?reset=1", timeout=30) as r:
        data = orjson.loads(r.read())
    return {path: v["ns"] for path, v in data.items()}


class Run:
    """What an open-loop run saw from the client side."""

    def __init__(self) -> None:
        self.sent = 0
        self.ok = 0
        self.statuses: dict[int, int] = {}
        self.latencies: list[float] = []
        self.first_error: str | None = None
        self.lag: list[float] = []
        """Seconds the generator sent each request after its scheduled instant (its own lag)."""
        self.started = 0.0
        self.finished = 0.0
        """Status 0: a request not sent because ``max_connections`` were all busy."""
        self.samples: list[bytes] = []
        """The first response bodies, to show what was answered."""


async def open_loop(port: int, requests: Sequence[bytes], *, rate: float, seconds: float,
                    max_connections: int = 512) -> Run:
    """Send request i at ``start + i / rate`` on an idle keep-alive connection (a new one when none is idle),
    whatever the server does; latency from the scheduled instant to the complete response."""
    loadgen.check_loopback(HOST)
    out = Run()
    idle: deque[loadgen.Connection] = deque([await loadgen.Connection.open(HOST, port) for _ in range(16)])
    opened = len(idle)
    count = min(len(requests), int(rate * seconds))
    tasks: list[asyncio.Task[None]] = []
    clock = time.perf_counter

    async def send(raw: bytes, due: float) -> None:
        nonlocal opened
        if idle:
            conn = idle.popleft()
        elif opened >= max_connections:  # the server fell behind: not sent, counted as an error
            out.statuses[0] = out.statuses.get(0, 0) + 1
            out.first_error = out.first_error or f"{max_connections} requests in flight: the server fell behind"
            return
        else:
            opened += 1
            conn = await loadgen.Connection.open(HOST, port)
        out.lag.append(clock() - due)
        conn, status, body = await loadgen.exchange(conn, HOST, port, raw)
        latency = clock() - due
        out.statuses[status] = out.statuses.get(status, 0) + 1
        if 200 <= status < 300:
            out.ok += 1
            out.latencies.append(latency)
            if len(out.samples) < SAMPLES:
                out.samples.append(body)
        elif out.first_error is None:
            out.first_error = f"{status}: {body[:300]!r}"
        idle.append(conn)

    out.started = clock()
    for i in range(count):
        due = out.started + i / rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(send(requests[i], due)))
        out.sent += 1
    await asyncio.gather(*tasks)
    out.finished = clock()
    for conn in idle:
        conn.close()
    return out


async def closed_loop(port: int, requests: Sequence[bytes], *, connections: int, seconds: float) -> Run:
    """Each of ``connections`` keep-alive connections sends its next request as soon as the previous one is
    answered, for ``seconds``: the most the server completes per second."""
    loadgen.check_loopback(HOST)
    out = Run()
    conns = [await loadgen.Connection.open(HOST, port) for _ in range(connections)]
    clock = time.perf_counter
    position = 0
    deadline = 0.0

    async def worker(conn: loadgen.Connection) -> None:
        nonlocal position
        while clock() < deadline:
            raw = requests[position % len(requests)]
            position += 1
            out.sent += 1
            sent = clock()
            conn, status, _body = await loadgen.exchange(conn, HOST, port, raw)
            out.statuses[status] = out.statuses.get(status, 0) + 1
            if 200 <= status < 300:
                out.ok += 1
                out.latencies.append(clock() - sent)
        conn.close()

    out.started = clock()
    deadline = out.started + seconds
    await asyncio.gather(*(worker(c) for c in conns))
    out.finished = clock()
    return out


def ms(values: Sequence[float], q: float, scale: float) -> float | None:
    return round(loadgen.percentile(values, q) * scale, 3) if values else None


def measure(endpoint: str, port: int, write_key: str, users: Sequence[str], args: argparse.Namespace,
            secret: bytes | None = None) -> dict[str, Any]:
    """Warm-up, then the measured open loop, then the server-side durations of the measured part."""
    total = int(args.rate * (args.warmup + args.seconds)) + 1
    path, requests = requests_for(endpoint, port, write_key, users, total, secret)
    warm_n = int(args.rate * args.warmup)
    if warm_n:
        run_async(open_loop(port, requests[:warm_n], rate=args.rate, seconds=args.warmup))
    server_latencies(port)
    run: Run = run_async(open_loop(port, requests[warm_n:], rate=args.rate, seconds=args.seconds))
    server = server_latencies(port).get(path, [])
    elapsed = run.finished - run.started
    capacity = None
    if args.capacity_seconds > 0:
        most: Run = run_async(closed_loop(port, requests, connections=args.capacity_connections,
                                          seconds=args.capacity_seconds))
        server_latencies(port)
        capacity = round(most.ok / (most.finished - most.started), 1)
    return {
        "endpoint": endpoint, "path": path, "offered_per_s": args.rate, "sent": run.sent, "ok": run.ok,
        "errors": run.sent - run.ok, "statuses": {str(k): v for k, v in run.statuses.items()},
        "first_error": run.first_error, "seconds": round(elapsed, 3),
        "achieved_per_s": round(run.ok / elapsed, 1) if elapsed else None,
        "server_count": len(server),
        "server_p50_ms": ms(server, 50, 1e-6), "server_p99_ms": ms(server, 99, 1e-6),
        "server_max_ms": round(max(server) * 1e-6, 3) if server else None,
        "client_p50_ms": ms(run.latencies, 50, 1e3), "client_p99_ms": ms(run.latencies, 99, 1e3),
        "client_max_ms": round(max(run.latencies) * 1e3, 3) if run.latencies else None,
        "generator_lag_p99_ms": ms(run.lag, 99, 1e3),
        "answers": answers(endpoint, run.samples),
        "capacity_per_s": capacity,
    }


def answers(endpoint: str, bodies: Sequence[bytes]) -> dict[str, Any]:
    """For decide, how the first responses chose: ``{placement: {"block (reason kind)": count}}``."""
    if not endpoint.startswith("decide"):
        return {}
    out: dict[str, dict[str, int]] = {}
    for body in bodies:
        for name, d in orjson.loads(body).get("decisions", {}).items():
            key = f"{d.get('block')} ({(d.get('reason') or {}).get('kind')})"
            out.setdefault(name, {})[key] = out.setdefault(name, {}).get(key, 0) + 1
    return {"responses": len(bodies), "placements": out}


# --- in-process -----------------------------------------------------------------------------

def in_process(url: str, data_dir: Path, workspace_id: str, users: Sequence[str],
               args: argparse.Namespace) -> dict[str, Any]:
    """``decide_in_process`` called ``--in-process-calls`` times (after a tenth as warm-up), µs per call."""
    from rapport.core import Rapport
    from rapport.settings import Settings

    rapport = Rapport(Settings(database_url=url, data_dir=data_dir))
    try:
        secret = identity_secret(rapport, workspace_id)
        bodies = [orjson.loads(decide_body(users[i % len(users)], i, secret)) for i in range(args.in_process_calls)]
        for body in bodies[: max(1, len(bodies) // 10)]:
            decide_in_process(rapport, workspace_id, body)
        durations: list[float] = []
        clock = time.perf_counter
        for body in bodies:
            started = clock()
            decide_in_process(rapport, workspace_id, body)
            durations.append(clock() - started)
        return {"calls": len(durations), "p50_us": ms(durations, 50, 1e6), "p99_us": ms(durations, 99, 1e6),
                "mean_us": round(statistics.fmean(durations) * 1e6, 1), "max_us": round(max(durations) * 1e6, 1)}
    finally:
        rapport.close()


# --- main -----------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoints", default="bare,decide",
                    help=f"comma-separated, measured in this order; of {', '.join(ENDPOINTS)}")
    ap.add_argument("--rate", type=float, default=2000.0, help="offered requests/s (open loop)")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds per endpoint")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of load before each measurement")
    ap.add_argument("--users", type=int, default=2000, help="people in the seeded population")
    ap.add_argument("--seed-events", type=int, default=40_000, help="events sent to make the population")
    ap.add_argument("--seed-days", type=int, default=28, help="days the seeded events are spread over")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--capacity-seconds", type=float, default=5.0,
                    help="after each open loop, a closed loop this long: the most the endpoint completes per second "
                         "(0: skip)")
    ap.add_argument("--capacity-connections", type=int, default=16)
    ap.add_argument("--in-process", action="store_true", help="also time one decision in process")
    ap.add_argument("--in-process-calls", type=int, default=20_000)
    ap.add_argument("--label", default="", help="added to the result file name")
    args = ap.parse_args()
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    unknown = sorted(set(endpoints) - set(ENDPOINTS))
    if unknown:
        raise SystemExit(f"unknown endpoints {unknown}; expected some of {', '.join(ENDPOINTS)}")

    work = Path(tempfile.mkdtemp(prefix="rapport-decide-bench-"))
    url = f"sqlite:///{work / 'rapport.db'}"
    env = server_env(url, work / "data")
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "backend": "sqlite",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "args": vars(args), "code": code_version(), "endpoints": [],
    }
    users = population(args.users, args.seed)
    secret: bytes | None = None
    try:
        needs_people = "decide" in endpoints or "decide-inline" in endpoints or args.in_process
        if needs_people:
            ws = prepare_decide(url, work / "data", args)
            results["seed"] = {k: v for k, v in ws.items() if k != "write_key"}
            print(f"seeded: {results['seed']}", flush=True)
            results["model"] = orjson.loads(train_model(env, ws["workspace_id"]))
            print(f"trained: {results['model']}", flush=True)
            secret = bytes.fromhex(cli(env, "workspace", "identity-secret", "--workspace", ws["workspace_id"]).strip())
        else:
            ws = create_workspace(env, "bench")
        port = free_port()
        with decide_server(env, port, work / "server.log"):
            for endpoint in endpoints:
                row = measure(endpoint, port, ws["write_key"], users, args, secret)
                results["endpoints"].append(row)
                print(f"{endpoint}: {row}", flush=True)
        if args.in_process:
            results["in_process"] = in_process(url, work / "data", ws["workspace_id"], users, args)
    finally:
        log = work / "server.log"
        if log.exists() and any(r["errors"] for r in results["endpoints"]):
            print(f"server log tail:\n{log.read_text(errors='replace')[-3000:]}")
        shutil.rmtree(work, ignore_errors=True)
    report(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    run = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = RESULTS / f"decide-{run}{'-' + args.label if args.label else ''}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


def report(r: dict[str, Any]) -> None:
    rows = r["endpoints"]
    floor = next((x for x in rows if x["endpoint"] == "bare"), None)
    print(f"\nsqlite — {r['machine']['cpus']} CPUs — {r['date']} — open loop at {r['args']['rate']:,.0f} requests/s, "
          f"{r['args']['seconds']:.0f} s per endpoint")
    head = ("endpoint", "achieved/s", "errors", "server p50", "server p99", "server max", "client p50", "client p99",
            "vs floor p99", "capacity/s")
    print("  " + "  ".join(f"{h:>12}" for h in head))
    for x in rows:
        ratio = ""
        if floor and floor["server_p99_ms"] and x["server_p99_ms"] is not None:
            ratio = f"{x['server_p99_ms'] / floor['server_p99_ms']:.1f}x"
        cells = (x["endpoint"], x["achieved_per_s"], x["errors"], x["server_p50_ms"], x["server_p99_ms"],
                 x["server_max_ms"], x["client_p50_ms"], x["client_p99_ms"], ratio, x.get("capacity_per_s"))
        print("  " + "  ".join(f"{c if c is not None else '-':>12}" for c in cells))
    print("  (milliseconds; target for decide: server p99 <= 5 ms at 2,000 requests/s)")
    if "in_process" in r:
        i = r["in_process"]
        print(f"  in-process decision, 3 placements: p50 {i['p50_us']} µs, p99 {i['p99_us']} µs, "
              f"mean {i['mean_us']} µs (target <= 100 µs)")


if __name__ == "__main__":
    main()
