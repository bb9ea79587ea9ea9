"""Journey routes of the admin API: catalog, per-step statistics with delivery feedback, enrollments, each
person's messages with the reason for every one that did not go out, and test sends to seed addresses."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from rapport.api.body import parse_json, read_limited
from rapport.api.json import json_response
from rapport.core import Rapport
from rapport.errors import ForbiddenError
from rapport.journeys import proofs
from rapport.journeys.reports import MAX_PAGE, Journeys
from rapport.workspaces.model import Principal, Scope


def router(rapport: Rapport, scoped: Callable[[Scope], Callable[..., Principal]]) -> APIRouter:
    api = APIRouter(tags=["journeys"])

    @api.get("/journeys")
    def listing(who: Principal = Depends(scoped("journeys:read"))) -> Response:  # noqa: B008
        """Every published journey with its enrollments and messages by status."""
        return json_response({"journeys": Journeys(rapport, who.workspace_id).catalog()})

    @api.get("/journeys/{name}")
    def detail(name: str, who: Principal = Depends(scoped("journeys:read"))) -> Response:  # noqa: B008
        """One journey: versions, and per step its messages by status, refusal reasons, waiting enrollments and
        delivery feedback (sent, delivered, opened, clicked, bounced, complained, unsubscribed, with rates)."""
        return json_response(Journeys(rapport, who.workspace_id).detail(name))

    @api.get("/journeys/{name}/enrollments")
    def enrollments(name: str, status: str | None = None, cursor: str | None = None,
                    limit: int = Query(50, ge=1, le=MAX_PAGE),
                    who: Principal = Depends(scoped("journeys:read"))) -> Response:  # noqa: B008
        """A page of the journey's enrollments (``status``: active, completed, exited), with ``next``."""
        return json_response(Journeys(rapport, who.workspace_id).enrollments(name, status, cursor, limit))

    @api.get("/profiles/{profile_id}/messages")
    def messages(profile_id: str, who: Principal = Depends(scoped("journeys:read"))) -> Response:  # noqa: B008
        """Every message journeys meant for the person: sent, waiting, or refused with the gate's reason."""
        return json_response(Journeys(rapport, who.workspace_id).messages(profile_id))

    @api.post("/journeys/{name}/test-sends")
    async def test_sends(name: str, request: Request,
                         who: Principal = Depends(scoped("journeys:write"))) -> Response:  # noqa: B008
        """Send the journey's messages to seed addresses: `{"step": id?, "to": [...] | "seed_list": name,
        "as_profile": profile id?, "event": {...}?}`. Subjects start with `[Test] `; each message has a test
        idempotency key; the response lists the gate checks not applied; the audit log keeps the send."""
        body = parse_json(await read_limited(request, 64 * 1024))
        if isinstance(body, dict) and (body.get("as_profile") or body.get("as_user_id")) \
                and not who.can("profiles:read"):
            raise ForbiddenError(f"role {who.role!r} lacks the 'profiles:read' permission that rendering a message "
                                 "as a profile needs", code="forbidden",
                                 details=[{"required": "profiles:read", "role": who.role}])
        out = await proofs.test_send(rapport, who.workspace_id, name, body, who.actor)
        return json_response(out)

    return api
