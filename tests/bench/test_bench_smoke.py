"""The personalization benchmarks' own parts: the email rendered the same by rapport and bare python-liquid,
the server-side timing middleware, the decide workload's resources, and the open loop against a floor."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import uvicorn
from fastapi import FastAPI

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import decide  # noqa: E402
import liquid_render  # noqa: E402
from _decide_server import Timing, add_floors  # noqa: E402

from rapport.core import Rapport  # noqa: E402
from rapport.errors import ForbiddenError  # noqa: E402
from rapport.resources import service as resources_service  # noqa: E402
from rapport.settings import Settings  # noqa: E402
from rapport.types import WorkspaceId  # noqa: E402


def test_the_typical_email_renders_alike_through_rapport_and_bare_liquid() -> None:
    people = liquid_render.people(40, seed=3)
    ours, floor = liquid_render.rapport_send(people)(), liquid_render.bare(people)()
    assert ours == floor
    sizes = [len(m["html"].encode()) for m in ours]
    assert min(sizes) >= 3_000 and max(sizes) <= 6_000
    without_name = next(i for i, p in enumerate(people) if "first_name" not in p["traits"])
    assert "Hello friend," in ours[without_name]["html"]
    assert ours[0]["html"].count('class="product"') == len(people[0]["event"]["products"])


def test_the_timing_middleware_records_durations_by_path_and_reports_them_once(floor_server: int) -> None:
    base = f"http://{decide.HOST}:{floor_server}"
    decide.server_latencies(floor_server)
    for path in ("/bench/bare", "/bench/bare", "/bench/bare", "/bench/bare-sync"):
        with urllib.request.urlopen(urllib.request.Request(f"{base}{path}", data=b'{"x":1}', method="POST")) as r:
            assert r.read() == b'{"ok":true}'
    first = decide.server_latencies(floor_server)
    assert {path: len(ns) for path, ns in first.items()} == {"/bench/bare": 3, "/bench/bare-sync": 1}
    assert all(ns > 0 for ns in first["/bench/bare"])
    assert decide.server_latencies(floor_server) == {}


def test_decide_requests_name_a_seeded_person_and_the_three_placements() -> None:
    users = decide.population(50, seed=1)
    assert sorted(users) == [f"user-{u:06d}" for u in range(50)]
    path, raws = decide.requests_for("decide", 8000, "wk", users, 3, b"k" * 32)
    assert path == "/api/v1/decide"
    head, body = raws[2].split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /api/v1/decide HTTP/1.1") and b"Authorization: Basic " in head
    assert f"Content-Length: {len(body)}".encode() in head
    payload = orjson.loads(body)
    assert payload["user_id"] == users[2] and payload["placements"] == list(decide.PLACEMENTS)
    assert payload["user_hash"] == hmac.new(b"k" * 32, users[2].encode(), hashlib.sha256).hexdigest()


def test_the_decide_resources_apply(rapport: Rapport) -> None:
    ws = WorkspaceId(rapport.create_workspace("bench").workspace_id)
    rapport.db.write(lambda c: resources_service.apply(c, ws, decide.decide_resources(), "test",
                                                       rapport.clock.now_ms()))
    specs = rapport.runtime(ws).specs
    assert set(specs["Placement"]) == set(decide.PLACEMENTS)
    assert "will_order" in specs["Model"]


@pytest.fixture
def floor_server() -> Iterator[int]:
    """The floors alone, timed, behind uvicorn on a loopback port."""
    app = FastAPI()
    add_floors(app)
    port = decide.free_port()
    server = uvicorn.Server(uvicorn.Config(Timing(app), host=decide.HOST, port=port, log_config=None,
                                           access_log=False, loop="asyncio"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_open_loop_sends_on_schedule_and_the_server_times_each_request(floor_server: int) -> None:
    decide.server_latencies(floor_server)
    users = decide.population(10, seed=1)
    _path, raws = decide.requests_for("bare", floor_server, "wk", users, 100)
    run = asyncio.run(decide.open_loop(floor_server, raws, rate=200, seconds=0.5))
    assert (run.sent, run.ok, run.statuses) == (100, 100, {200: 100})
    assert run.finished - run.started >= 0.49
    assert len(decide.server_latencies(floor_server)["/bench/bare"]) == 100


def test_a_small_population_is_prepared_and_decided_for_in_process(tmp_path: Path) -> None:
    args = argparse.Namespace(seed_days=3, seed_events=3_000, users=40, seed=2)
    url = f"sqlite:///{tmp_path / 'rapport.db'}"
    made = decide.prepare_decide(url, tmp_path / "data", args)
    assert made["events"] > 2_000 and made["days"] == 3
    rapport = Rapport(Settings(database_url=url, data_dir=tmp_path / "data"))
    try:
        secret = decide.identity_secret(rapport, made["workspace_id"])
        body = orjson.loads(decide.decide_body(decide.population(40, seed=2)[0], 0, secret))
        out = decide.decide_in_process(rapport, made["workspace_id"], body)
        unsigned = orjson.loads(decide.decide_body(decide.population(40, seed=2)[0], 0))
        with pytest.raises(ForbiddenError):
            decide.decide_in_process(rapport, made["workspace_id"], unsigned)
    finally:
        rapport.close()
    assert set(out["decisions"]) == set(decide.PLACEMENTS)


def test_the_closed_loop_counts_what_the_server_completes(floor_server: int) -> None:
    _path, raws = decide.requests_for("bare-sync", floor_server, "wk", decide.population(5, seed=1), 10)
    run = asyncio.run(decide.closed_loop(floor_server, raws, connections=4, seconds=0.3))
    assert run.ok == run.sent > 10 and set(run.statuses) == {200}
    assert len(decide.server_latencies(floor_server)["/bench/bare-sync"]) == run.ok
