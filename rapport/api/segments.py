"""Segment routes of the admin API: catalog, preview, members, export, explain, history, overlap, refresh."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from rapport.api.body import parse_json, read_limited
from rapport.api.json import json_response
from rapport.clock import parse_iso
from rapport.core import Rapport
from rapport.errors import ForbiddenError, ValidationError
from rapport.segments import catalog, export
from rapport.types import JsonObject
from rapport.workspaces.model import Principal, Scope

MAX_PAGE = 1000


def router(rapport: Rapport, scoped: Callable[[Scope], Callable[..., Principal]]) -> APIRouter:
    api = APIRouter(prefix="/segments", tags=["segments"])

    def as_of(value: object) -> int:
        if value is None:
            return rapport.clock.now_ms()
        if not isinstance(value, str):
            raise ValidationError("'as_of' must be an ISO-8601 time", code="invalid_request")
        try:
            return parse_iso(value)
        except ValueError:
            raise ValidationError(f"'as_of' is not an ISO-8601 time: {value[:40]!r}", code="invalid_request") from None

    def limit_of(value: object, default: int = 50) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE:
            raise ValidationError(f"'limit' must be a whole number from 1 to {MAX_PAGE}", code="invalid_request")
        return value

    def run(who: Principal, fn: Callable[[catalog.Segments], Any]) -> Any:
        return fn(catalog.Segments(rapport, who.workspace_id))

    @api.get("")
    def listing(who: Principal = Depends(scoped("segments:read"))) -> Response:  # noqa: B008
        """Every segment with its governance, lineage, version and member counts."""
        return json_response({"segments": run(who, lambda s: s.catalog())})

    @api.post("/preview")
    async def preview(request: Request, who: Principal = Depends(scoped("segments:read"))) -> Response:  # noqa: B008
        """Who a rule selects before it is saved: `{"rule": TEXT, "as_of": ISO, "limit": N, "cursor": C}`."""
        body = parse_json(await read_limited(request, 256 * 1024))
        if not isinstance(body, dict) or not isinstance(body.get("rule"), str):
            raise ValidationError("the body must be an object with a 'rule' string", code="invalid_request")
        unknown = sorted(set(body) - {"rule", "as_of", "limit", "cursor"})
        if unknown:
            raise ValidationError(f"unknown field(s) {', '.join(unknown)}; expected rule, as_of, limit, cursor",
                                  code="invalid_request")
        cursor = body.get("cursor")
        if cursor is not None and not isinstance(cursor, str):
            raise ValidationError("'cursor' must be a string from a previous 'next'", code="invalid_request")
        at, limit = as_of(body.get("as_of")), limit_of(body.get("limit"))
        out: JsonObject = await run_in_threadpool(run, who, lambda s: s.preview(body["rule"], at, limit, cursor))
        return json_response(out)

    @api.get("/overlap")
    def overlap(names: str = Query(..., description="comma-separated segment names"),
                who: Principal = Depends(scoped("segments:read"))) -> Response:  # noqa: B008
        """How many profiles each pair of segments shares (current members)."""
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        return json_response(run(who, lambda s: s.overlap(wanted)))

    @api.post("/refresh")
    async def refresh(request: Request, who: Principal = Depends(scoped("segments:write"))) -> Response:  # noqa: B008
        """Recompute membership by SQL and reconcile it with the live state: `{"names": [...]}` (all when
        absent); reports, per segment, the entries and exits it had to make."""
        raw = await read_limited(request, 64 * 1024)
        body = parse_json(raw) if raw.strip() else {}
        names = body.get("names") if isinstance(body, dict) else None
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ValidationError("'names' must be a list of segment names", code="invalid_request")
        report = await run_in_threadpool(run, who, lambda s: s.refresh(names, who.actor))
        return json_response({"segments": report})

    @api.get("/{name}")
    def one(name: str, who: Principal = Depends(scoped("segments:read"))) -> Response:  # noqa: B008
        """One segment of the catalog."""
        return json_response(run(who, lambda s: s.describe(name)))

    @api.get("/{name}/versions")
    def versions(name: str, who: Principal = Depends(scoped("segments:read"))) -> Response:  # noqa: B008
        """Every applied version of the segment with the fields that changed from the previous one."""
        return json_response(run(who, lambda s: s.versions(name)))

    @api.get("/{name}/members")
    def members(name: str, cursor: str | None = None, limit: int = Query(50, ge=1, le=MAX_PAGE),
                activatable: bool | None = None,
                who: Principal = Depends(scoped("segments:read"))) -> Response:  # noqa: B008
        """Current members by profile id, paginated; `?activatable=false` lists those qualified but without
        consent for the segment's purpose."""
        return json_response(run(who, lambda s: s.members(name, cursor, limit, activatable)))

    @api.get("/{name}/export")
    def export_members(name: str, fmt: str = Query("csv", alias="format", description="csv or parquet"),
                       include: str | None = Query(None, description="personal columns to add: email, phone"),
                       who: Principal = Depends(scoped("segments:read"))) -> Response:  # noqa: B008
        """Current members as a CSV or Parquet file, streamed page by page: profile_id, entered_at,
        version, activatable, user_id, anonymous_id (several values joined by `;`). `include=email,phone`
        adds those columns and needs the `profiles:read` permission as well."""
        kind = export.export_format(fmt)
        personal = export.personal_columns((include or "").split(","))
        if personal and not who.can("profiles:read"):
            raise ForbiddenError(f"role {who.role!r} lacks the 'profiles:read' permission that exporting "
                                 f"{', '.join(personal)} needs", code="forbidden",
                                 details=[{"required": "profiles:read", "role": who.role}])
        pages = run(who, lambda s: s.export(name, personal))
        return StreamingResponse(export.encode(kind, (*export.COLUMNS, *personal), pages),
                                 media_type=export.MEDIA_TYPES[kind],
                                 headers={"Content-Disposition": f'attachment; filename="{name}.{kind}"'})

    @api.get("/{name}/explain")
    def explain(name: str, profile_id: str, as_of_time: str | None = Query(None, alias="as_of"),
                who: Principal = Depends(scoped("segments:read"))) -> Response:  # noqa: B008
        """The segment's rule for one profile: every node with its value and what it needs."""
        return json_response(run(who, lambda s: s.explain(name, profile_id, as_of(as_of_time))))

    @api.get("/{name}/history")
    def history(name: str, profile_id: str | None = None, cursor: str | None = None,
                limit: int = Query(50, ge=1, le=MAX_PAGE),
                who: Principal = Depends(scoped("segments:read"))) -> Response:  # noqa: B008
        """Entries and exits of the segment (one row per stay), newest first."""
        return json_response(run(who, lambda s: s.history(name, profile_id, cursor, limit)))

    return api
