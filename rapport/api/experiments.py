"""Admin routes: experiments, their results as JSON and as a PNG chart of lifts with intervals."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends
from starlette.responses import Response

from rapport.api.json import json_response
from rapport.core import Rapport
from rapport.experiments import chart, service
from rapport.experiments.results import ExperimentResults, to_json
from rapport.workspaces.model import Principal, Scope


def router(rapport: Rapport, scoped: Callable[[Scope], Callable[..., Principal]]) -> APIRouter:
    api = APIRouter(prefix="/experiments", tags=["experiments"])

    def results_of(who: Principal, name: str) -> ExperimentResults:
        rt = rapport.runtime(who.workspace_id)
        now = rapport.clock.now_ms()
        return rapport.db.read(lambda conn: service.results(conn, rt, name, now))

    @api.get("")
    def listing(who: Principal = Depends(scoped("experiments:read"))) -> Response:  # noqa: B008
        """Every experiment with its status, target, metrics and units per variant."""
        rt = rapport.runtime(who.workspace_id)
        now = rapport.clock.now_ms()
        return json_response({"experiments": rapport.db.read(lambda conn: service.overview(conn, rt, now))})

    @api.get("/{name}/results")
    def results(name: str, who: Principal = Depends(scoped("experiments:read"))) -> Response:  # noqa: B008
        """Per metric and variant against control: tests, lifts with intervals, corrections, Bayesian and
        sequential views, CUPED, the sample-ratio check, guardrails and per-segment results."""
        return json_response(to_json(results_of(who, name)))

    @api.get("/{name}/results.png")
    def results_png(name: str, who: Principal = Depends(scoped("experiments:read"))) -> Response:  # noqa: B008
        """A PNG chart of each metric's relative lift per variant with its interval."""
        return Response(chart.png(results_of(who, name)), media_type="image/png")

    return api
