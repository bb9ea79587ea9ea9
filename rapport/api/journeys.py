"""Journey routes of the admin API: catalog, per-step statistics, enrollments, and each person's messages
with the reason for every one that did not go out."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from rapport.api.json import json_response
from rapport.core import Rapport
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
        """One journey: versions, and per step its messages by status, refusal reasons and waiting enrollments."""
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

    return api
