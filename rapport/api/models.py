"""Admin routes: models (catalog with versions and metrics, train, score)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from rapport.api.json import json_response
from rapport.core import Rapport
from rapport.models.catalog import Models
from rapport.workspaces.model import Principal, Scope


def router(rapport: Rapport, scoped: Callable[[Scope], Callable[..., Principal]]) -> APIRouter:
    api = APIRouter(prefix="/models", tags=["models"])

    def models(who: Principal) -> Models:
        return Models(rapport, who.workspace_id)

    @api.get("")
    def listing(who: Principal = Depends(scoped("models:read"))) -> Response:  # noqa: B008
        """Every Model resource with its latest trained version's test metrics."""
        return json_response({"models": models(who).catalog()})

    @api.get("/{name}")
    def one(name: str, who: Principal = Depends(scoped("models:read"))) -> Response:  # noqa: B008
        """One model: its resource and every trained version with metrics and parameters, newest first."""
        return json_response(models(who).describe(name))

    @api.post("/{name}/train")
    async def train(name: str, who: Principal = Depends(scoped("models:write"))) -> Response:  # noqa: B008
        """Train a new version on a point-in-time snapshot; with `write_to`, score everyone afterwards."""
        return json_response(await run_in_threadpool(lambda: models(who).train(name, who.actor)))

    @api.post("/{name}/score")
    async def score(name: str, who: Principal = Depends(scoped("models:write"))) -> Response:  # noqa: B008
        """Score every live profile with the latest version and write the scores to `write_to`."""
        return json_response(await run_in_threadpool(lambda: models(who).score(name, who.actor)))

    return api
