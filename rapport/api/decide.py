"""The decision API: ``POST /api/v1/decide`` with a write key (browser, app) or an admin token, and the content
catalog ``GET /api/v1/content[/{name}]`` (admin).

A write-key caller gets, per placement, the block, its rendered content and the reason's kind (with the
experiment and variant; a consent fallback reads as ``default``); never traits, identifiers, computed values,
scores, model reasons or guardrails, nor the list of placements. An admin token with ``profiles:read`` gets
everything, confidence and guardrails included, and may ask for a ``dry_run`` (nothing assigned or recorded).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from rapport.api.admin import admin_principal, admin_scopes
from rapport.api.body import parse_json, read_limited
from rapport.api.json import json_response
from rapport.api.tracking import ingest_principal, write_key_from
from rapport.content import catalog
from rapport.core import Rapport
from rapport.decisions.service import decide_request, decide_request_async, parse_request
from rapport.workspaces.model import Principal

MAX_BODY = 16 * 1024


def router(rapport: Rapport) -> APIRouter:
    api = APIRouter(tags=["decisions"])
    scoped = admin_scopes(rapport)
    # On SQLite a decision's reads take microseconds on a pooled connection and its rare first assignment is
    # awaited on the writer's future: deciding on the event loop saves the hop to a worker thread, which costs
    # more than the decision. PostgreSQL reads wait on the network, so they keep the thread pool.
    inline = rapport.db.dialect.name == "sqlite"

    async def decide(request: Request) -> Response:
        """Decide placements for a person: `{"user_id" | "anonymous_id" | "profile_id": ..., "placements": [...],
        "context": {...}, "locale": "de-AT"}`. With the write key (HTTP Basic, or `writeKey`) only `user_id` or
        `anonymous_id`, and only the block, its content and the reason's kind come back; with an admin token
        (`Bearer`, `profiles:read`) the full decision: confidence, scores, reasons and guardrails, and
        `"dry_run": true` previews without assigning or recording anything."""
        payload = parse_json(await read_limited(request, MAX_BODY))
        if request.headers.get("authorization", "")[:7].lower() == "bearer ":
            who = admin_principal(rapport, request, "profiles:read")
            full = True
        else:
            who = ingest_principal(rapport, write_key_from(request, payload))
            full = False
        parsed = parse_request(payload, admin=full)
        if inline:
            out = await decide_request_async(rapport, who.workspace_id, parsed, full=full)
        else:
            out = await run_in_threadpool(decide_request, rapport, who.workspace_id, parsed, full=full)
        return json_response(out)

    # A plain Starlette route: the hot path skips FastAPI's per-request dependency and validation machinery (it
    # has no parameters for it to solve); errors still go through the app's one error shape.
    api.add_route("/api/v1/decide", decide, methods=["POST"])

    @api.get("/api/v1/content")
    def content_list(who: Principal = Depends(scoped("resources:read"))) -> Response:  # noqa: B008
        """Every content block and placement with the profile fields it reads."""
        return json_response(catalog.listing(rapport.runtime(who.workspace_id)))

    @api.get("/api/v1/content/{name}")
    def content_show(name: str, who: Principal = Depends(scoped("resources:read"))) -> Response:  # noqa: B008
        """One content block or placement: its definition and the profile fields its Liquid and rules read."""
        return json_response(catalog.describe(rapport.runtime(who.workspace_id), name))

    return api
