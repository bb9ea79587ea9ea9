"""Template routes of the admin API: a message previewed as a given profile, strict about missing values."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from rapport.api.body import parse_json, read_limited
from rapport.api.json import json_response
from rapport.core import Rapport
from rapport.journeys import proofs
from rapport.workspaces.model import Principal, Scope


def router(rapport: Rapport, scoped: Callable[[Scope], Callable[..., Principal]]) -> APIRouter:
    api = APIRouter(tags=["templates"])

    @api.post("/templates/{name}/preview")
    async def preview(name: str, request: Request,
                      who: Principal = Depends(scoped("profiles:read"))) -> Response:  # noqa: B008
        """The template rendered as a profile (`{"profile_id": ...}` or `{"user_id": ...}`, or `email`, `phone`,
        `anonymous_id`, `device_id`; none: sample values) with the triggering event's properties
        (`"event": {...}`). A value the template outputs that the profile lacks is a 422 naming the variable,
        the part and the line; `| default: ...` and `{% if %}` tests handle missing values as when sending."""
        raw = await read_limited(request, 64 * 1024)
        body = parse_json(raw) if raw.strip() else {}
        out = await run_in_threadpool(proofs.preview_template, rapport, who.workspace_id, name, body)
        return json_response(out)

    return api
