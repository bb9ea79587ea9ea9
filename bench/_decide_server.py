"""``rapport serve`` with benchmark instruments, for ``bench/decide.py`` (loopback only).

    .venv/bin/python bench/_decide_server.py --host 127.0.0.1 --port 8123

Runs exactly what ``rapport serve`` runs (settings from ``RAPPORT_*``, ``rapport.api.server.serve``: the
same app, uvicorn configuration, logging and ``gc.freeze``), with two additions made to the app before
uvicorn starts:

- the floors, routes of the same FastAPI app (so behind the same middleware and error handlers) that
  return a constant: ``POST /bench/bare`` (``async def``, reads the body) and ``POST /bench/bare-sync``
  (``def``: FastAPI runs it in its thread pool, as it runs rapport's synchronous endpoints); and
  ``POST /bench/decide-inline``, the decision API's work done on the event loop (see ``add_inline_decide``);
- an outermost ASGI middleware timing each HTTP request inside the server, from the moment uvicorn
  hands it to the app to the last byte of the response handed back, per path. ``GET /bench/latencies``
  (answered by the middleware itself, not timed) returns ``{path: {"count": n, "ns": [...]}}`` and,
  with ``?reset=1``, starts afresh.
"""

from __future__ import annotations

import argparse
import time
from array import array
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from rapport.api import server as api_server
from rapport.api.app import create_app
from rapport.cli import _rapport

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONSTANT = b'{"ok":true}'
LATENCIES = "/bench/latencies"


class Timing:
    """Pure ASGI middleware recording server-side request durations (nanoseconds) by path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.durations: dict[str, array[int]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == LATENCIES:
            await self._report(scope, send)
            return
        started = time.perf_counter_ns()
        samples = self.durations.get(path)
        if samples is None:
            samples = self.durations[path] = array("q")

        async def timed_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                samples.append(time.perf_counter_ns() - started)

        await self.app(scope, receive, timed_send)

    async def _report(self, scope: Scope, send: Send) -> None:
        body = orjson.dumps({path: {"count": len(ns), "ns": ns.tolist()} for path, ns in self.durations.items()})
        if b"reset=1" in scope.get("query_string", b""):
            self.durations = {}
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def add_floors(app: FastAPI) -> None:
    """The constant endpoints the decision API is measured beside."""

    @app.post("/bench/bare", include_in_schema=False)
    async def bare(request: Request) -> Response:
        await request.body()
        return Response(CONSTANT, media_type="application/json")

    @app.post("/bench/bare-sync", include_in_schema=False)
    def bare_sync() -> Response:
        return Response(CONSTANT, media_type="application/json")


def add_inline_decide(app: FastAPI, rapport: Any) -> None:
    """``POST /bench/decide-inline``: what ``POST /api/v1/decide`` does for a write key, run on the event loop
    instead of the thread pool, to show what the hop to a thread costs under load."""
    from rapport.api.body import parse_json, read_limited
    from rapport.api.decide import MAX_BODY
    from rapport.api.json import json_response
    from rapport.api.tracking import ingest_principal, write_key_from
    from rapport.decisions.service import decide_request, parse_request

    @app.post("/bench/decide-inline", include_in_schema=False)
    async def decide_inline(request: Request) -> Response:
        payload = parse_json(await read_limited(request, MAX_BODY))
        who = ingest_principal(rapport, write_key_from(request, payload))
        out = decide_request(rapport, who.workspace_id, parse_request(payload, admin=False), full=False)
        return json_response(out)


def instrumented_app(rapport: Any) -> Any:
    app = create_app(rapport)
    add_floors(app)
    add_inline_decide(app, rapport)
    return Timing(app)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    # ``serve`` builds its app with ``create_app``: give it the instrumented one, and change nothing else.
    api_server.create_app = instrumented_app  # type: ignore[assignment]
    api_server.serve(_rapport(), args.host, args.port)


if __name__ == "__main__":
    main()
