"""Admin routes: recommendations (build, a person's lists, replenishment due) and KPI reports."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from rapport.analytics import service as kpis
from rapport.api.json import json_response
from rapport.clock import to_iso
from rapport.core import Rapport
from rapport.recommendations import service as recommendations
from rapport.recommendations.model import LEAD_MS
from rapport.workspaces.model import Principal, Scope

MAX_DUE = 10_000


def router(rapport: Rapport, scoped: Callable[[Scope], Callable[..., Principal]]) -> APIRouter:
    api = APIRouter(tags=["insights"])

    @api.post("/recommendations/build")
    def build(who: Principal = Depends(scoped("models:write"))) -> Response:  # noqa: B008
        """Recompute the recommendation aggregates (bought together, popular per segment, repurchase intervals)
        from the stored events."""
        return json_response(recommendations.build_now(rapport, who.workspace_id).to_json())

    @api.get("/profiles/{profile_id}/recommendations")
    def for_profile(profile_id: str, kind: str = Query("bought_together"), segment: str | None = None,
                    product: str | None = None, limit: int = Query(10, ge=1, le=recommendations.MAX_LIMIT),
                    who: Principal = Depends(scoped("profiles:read"))) -> Response:  # noqa: B008
        """A person's recommendations: `kind=bought_together|popular|replenishment`, `segment=` for popular,
        `product=` to anchor bought together on one product."""
        rt = rapport.runtime(who.workspace_id)
        now = rapport.clock.now_ms()
        found = rapport.db.read(lambda c: recommendations.recommend(
            c, rt, profile_id, kind, segment=segment, limit=limit, now=now, product=product))
        return json_response({"profile_id": profile_id, "kind": kind, "segment": segment, **found.to_json()})

    @api.get("/recommendations/replenishment")
    def replenishment(due_before: str | None = None, limit: int = Query(1000, ge=1, le=MAX_DUE),
                      who: Principal = Depends(scoped("profiles:read"))) -> Response:  # noqa: B008
        """People due to buy a product again by `due_before` (default now plus the lead time), from the last
        build; only those who allow personalization now (`withheld` counts the others)."""
        now = rapport.clock.now_ms()
        before = kpis.instant("due_before", due_before, now + LEAD_MS)
        rt = rapport.runtime(who.workspace_id)
        listed, withheld = rapport.db.read(lambda c: recommendations.due_allowed(c, rt, before, limit, now))
        return json_response({"due_before": to_iso(before), "due": [d.to_json() for d in listed],
                              "withheld": withheld})

    @api.get("/kpis")
    def kpi_report(by: str = Query("journey"), from_: str | None = Query(None, alias="from"), to: str | None = None,
                   min_count: int | None = Query(None, ge=1), window: str = Query("3d"),
                   membership: str = Query("current"),
                   who: Principal = Depends(scoped("reports:read"))) -> Response:  # noqa: B008
        """KPIs per `by=segment|journey|message` over `from`..`to` (default the last 30 days): recipients, open
        rate, CTR, conversion within the attribution `window`, revenue per recipient, unsubscribe rate; cells
        under the minimum count suppressed (`min_count` may only raise the workspace's)."""
        rt = rapport.runtime(who.workspace_id)
        q = kpis.query_of(rt, by, from_, to, min_count, window, membership, rapport.clock.now_ms())
        return json_response(rapport.db.read(lambda c: kpis.report(c, rt, q)))

    return api
