"""The admin REST API under /api/v1: bearer tokens with roles, every route scoped to one workspace."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from rapport.api import experiments, insights, journeys, models, segments, templates
from rapport.api.body import parse_json, read_limited
from rapport.api.json import json_response
from rapport.clock import to_iso
from rapport.consent import service as consent_service
from rapport.core import Rapport
from rapport.errors import AuthError, ForbiddenError, NotFoundError, ValidationError
from rapport.identity.unmerge import unmerge
from rapport.ingestion import quarantine
from rapport.profiles import backfill
from rapport.profiles.service import ProfileReader
from rapport.resources import service as resources_service
from rapport.storage.base import Conn
from rapport.storage.sql import identity as identity_sql
from rapport.storage.sql import resources as resources_sql
from rapport.storage.sql import workspaces as ws_sql
from rapport.workspaces import verification
from rapport.workspaces.model import Principal, Scope, WorkspaceSettings

LOOKUP_TYPES = ("user_id", "anonymous_id", "email", "phone", "device_id")
MAX_APPLY_BYTES = 2 * 1024 * 1024


def admin_principal(rapport: Rapport, request: Request, scope: Scope) -> Principal:
    """The admin token of a request (``Authorization: Bearer``), which must carry ``scope``."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() != "bearer ":
        raise AuthError("missing admin token: send 'Authorization: Bearer <token>'", code="missing_credentials")
    who = rapport.authenticate(header[7:].strip())
    if who.kind != "admin_token":
        raise ForbiddenError("a write key can only ingest events; use an admin token", code="wrong_credential_kind")
    if not who.can(scope):
        raise ForbiddenError(f"role {who.role!r} lacks the {scope!r} permission", code="forbidden",
                             details=[{"required": scope, "role": who.role}])
    return who


def admin_scopes(rapport: Rapport) -> Callable[[Scope], Callable[..., Principal]]:
    """``scoped(scope)``: a route dependency giving the request's admin token, which must carry ``scope``."""
    def scoped(scope: Scope) -> Callable[..., Principal]:
        def check(request: Request) -> Principal:
            return admin_principal(rapport, request, scope)
        return check
    return scoped


def router(rapport: Rapport) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["admin"])

    scoped = admin_scopes(rapport)

    def read(who: Principal, fn: Callable[[Conn, ProfileReader], Any]) -> Any:
        rt = rapport.runtime(who.workspace_id)
        return rapport.db.read(lambda conn: fn(conn, ProfileReader(conn, rt, rapport.keyring)))

    @api.get("/profiles/lookup")
    def lookup(request: Request, who: Principal = Depends(scoped("profiles:read"))) -> Response:  # noqa: B008
        """The unified profile holding an identifier: `?email=`, `?user_id=`, `?anonymous_id=`, `?phone=`..."""
        given = [(k, v) for k, v in request.query_params.items() if k in LOOKUP_TYPES]
        unknown = [k for k in request.query_params if k not in LOOKUP_TYPES]
        if unknown or len(given) != 1:
            raise ValidationError(f"give exactly one identifier; expected one of {', '.join(LOOKUP_TYPES)}",
                                  code="invalid_lookup", details=[{"unknown": unknown}] if unknown else [])
        at = rapport.clock.now_ms()
        return json_response(read(who, lambda _c, r: r.view(r.find(*given[0]), at)))

    @api.get("/profiles/{profile_id}")
    def profile(profile_id: str, who: Principal = Depends(scoped("profiles:read"))) -> Response:  # noqa: B008
        """A profile by id (an id merged into another profile returns the surviving one)."""
        at = rapport.clock.now_ms()
        return json_response(read(who, lambda _c, r: r.view(r.live_id(profile_id), at)))

    @api.get("/profiles/{profile_id}/events")
    def timeline(profile_id: str, cursor: str | None = None, limit: int = Query(50, ge=1, le=500),
                 who: Principal = Depends(scoped("events:read"))) -> Response:  # noqa: B008
        """The profile's events, newest first, paginated with `next`."""
        return json_response(read(who, lambda _c, r: r.timeline(r.live_id(profile_id), cursor, limit)))

    @api.get("/profiles/{profile_id}/traits")
    def traits(profile_id: str, who: Principal = Depends(scoped("profiles:read"))) -> Response:  # noqa: B008
        """Traits with their source, event time and message."""
        return json_response(read(who, lambda _c, r: r.traits(r.live_id(profile_id), with_meta=True)))

    @api.get("/profiles/{profile_id}/consent")
    def consent_history(profile_id: str, who: Principal = Depends(scoped("consent:read"))) -> Response:  # noqa: B008
        """The profile's consent ledger (append-only history) and the current state per purpose."""
        at = rapport.clock.now_ms()

        def fn(_c: Conn, r: ProfileReader) -> Any:
            pid = r.live_id(profile_id)
            return {"profile_id": pid, "history": r.consent_history(pid), "current": r.consent(pid, at)}
        return json_response(read(who, fn))

    @api.get("/profiles/{profile_id}/merges")
    def merges(profile_id: str, who: Principal = Depends(scoped("profiles:read"))) -> Response:  # noqa: B008
        """The merge log of a profile: each merge with its identifiers, event and time."""
        def fn(conn: Conn, r: ProfileReader) -> Any:
            pid = r.live_id(profile_id)
            rows = identity_sql.merges_of(conn, who.workspace_id, identity_sql.subtree(conn, who.workspace_id, pid))
            return {"merges": [{"id": m[0], "winner": m[1], "loser": m[2],
                                "identifier_types": sorted({i[0] for i in orjson.loads(m[3])}),
                                "message_id": m[4], "reason": m[5], "merged_at": to_iso(m[6]),
                                "undone_at": None if m[7] is None else to_iso(m[7])} for m in rows]}
        return json_response(read(who, fn))

    @api.post("/profiles/{profile_id}/unmerge")
    async def unmerge_route(profile_id: str, request: Request,
                            who: Principal = Depends(scoped("profiles:write"))) -> Response:  # noqa: B008
        """Split a profile back along a logged merge: `{"merge_id": "..."}`."""
        body = parse_json(await read_limited(request, 4096))
        merge_id = body.get("merge_id") if isinstance(body, dict) else None
        if not isinstance(merge_id, str):
            raise ValidationError("give the 'merge_id' to undo (see GET .../merges)", code="invalid_request")
        rt = rapport.runtime(who.workspace_id)
        root, loser = await run_in_threadpool(rapport.db.write, lambda conn: unmerge(
            conn, rt, rapport.keyring, rapport.clock, merge_id, who.actor))
        return json_response({"profiles": [root, loser]})

    @api.get("/identity/conflicts")
    def conflicts(profile_id: str | None = None, limit: int = Query(100, ge=1, le=1000),
                  who: Principal = Depends(scoped("profiles:read"))) -> Response:  # noqa: B008
        """Refused merges and identifiers, newest first."""
        rows = rapport.db.read(lambda c: identity_sql.conflicts(c, who.workspace_id, profile_id, limit))
        return json_response({"conflicts": [
            {"identifier_type": r[1], "holder": r[3], "target": r[4], "reason": r[5], "message_id": r[6],
             "recorded_at": to_iso(r[7])} for r in rows]})

    @api.post("/consent")
    async def consent(request: Request, who: Principal = Depends(scoped("consent:write"))) -> Response:  # noqa: B008
        """Record a consent ledger entry (grant, deny or withdraw) for a person."""
        body = parse_json(await read_limited(request, 16 * 1024))
        rt = rapport.runtime(who.workspace_id)
        out = await run_in_threadpool(rapport.db.write, lambda conn: consent_service.record(
            conn, rt, rapport.keyring, rapport.clock, body, who.actor))
        return json_response(out, 201)

    @api.get("/quarantine")
    def quarantined(event: str | None = None, cursor: str | None = None, limit: int = Query(50, ge=1, le=500),
                    who: Principal = Depends(scoped("quarantine:read"))) -> Response:  # noqa: B008
        """Messages a tracking plan quarantined, newest first, with their payloads; paginated with `next`."""
        items, nxt = quarantine.page(rapport, who.workspace_id, event=event, cursor=cursor, limit=limit)
        return json_response({"messages": [m.to_json() for m in items], "next": nxt})

    @api.post("/quarantine/replay")
    async def replay(request: Request, who: Principal = Depends(scoped("quarantine:write"))) -> Response:  # noqa: B008
        """Run quarantined messages through the current tracking plans and store those that now pass:
        `{"ids": [...]}`, `{"event": NAME}` or `{"all": true}`."""
        selection = quarantine.Selection.from_json(parse_json(await read_limited(request, 1024 * 1024)))
        report = await run_in_threadpool(quarantine.replay, rapport, who.workspace_id, selection, who.actor)
        return json_response(report.to_json())

    yaml_body = {"requestBody": {"content": {"application/yaml": {"schema": {"type": "string"}}}}}

    @api.post("/apply", openapi_extra=yaml_body)
    async def apply(request: Request, dry_run: bool = False, prune: bool = False,
                    who: Principal = Depends(scoped("resources:write"))) -> Response:  # noqa: B008
        """Apply YAML resource documents (`Content-Type: application/yaml`); `?dry_run=true` only diffs."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in ("application/yaml", "application/x-yaml", "text/yaml"):
            raise ValidationError(f"expected Content-Type application/yaml, got {ctype or 'none'!r}",
                                  code="unsupported_media_type")
        raw = await read_limited(request, MAX_APPLY_BYTES)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError("the YAML body is not valid UTF-8", code="invalid_yaml") from None
        ws = who.workspace_id
        now = rapport.clock.now_ms()
        if dry_run:
            changes = await run_in_threadpool(rapport.db.read, lambda c: resources_service.diff(
                c, ws, text, prune, now=now, keyring=rapport.keyring))
        else:
            changes = await run_in_threadpool(rapport.db.write, lambda c: resources_service.apply(
                c, ws, text, who.actor, now, prune, keyring=rapport.keyring))
            rapport.invalidate(ws)
            rt = rapport.runtime(ws, fresh=True)
            await run_in_threadpool(rapport.db.write, lambda c: backfill.register_missing(c, rt, rapport.clock))
        return json_response({"dry_run": dry_run, "changes": [resources_service.change_json(c) for c in changes]})

    @api.get("/resources")
    def resources(kind: str | None = None, who: Principal = Depends(scoped("resources:read"))) -> Response:  # noqa: B008
        """Every live resource (current version)."""
        rows = rapport.db.read(lambda c: resources_sql.current(c, who.workspace_id, kind))
        return json_response({"resources": [{"kind": r[0], "name": r[1], "version": r[2], "spec": orjson.loads(r[3]),
                                             "applied_at": to_iso(r[5])} for r in rows]})

    @api.get("/resources/{kind}/{name}/history")
    def resource_history(kind: str, name: str, who: Principal = Depends(scoped("resources:read"))) -> Response:  # noqa: B008
        """Every version of one resource."""
        rows = rapport.db.read(lambda c: resources_sql.history(c, who.workspace_id, kind, name))
        if not rows:
            raise NotFoundError(f"no resource {kind}/{name}", code="resource_not_found")
        return json_response({"versions": [{"version": r[0], "spec": orjson.loads(r[1]), "deleted": bool(r[3]),
                                            "actor": r[4], "applied_at": to_iso(r[5])} for r in rows]})

    @api.get("/computed-traits")
    def computed_traits(who: Principal = Depends(scoped("resources:read"))) -> Response:  # noqa: B008
        """Computed traits with their backfill state."""
        rt = rapport.runtime(who.workspace_id)
        return json_response({"computed_traits": rapport.db.read(lambda c: backfill.status(c, rt))})

    @api.get("/settings")
    def get_settings(who: Principal = Depends(scoped("resources:read"))) -> Response:  # noqa: B008
        """The workspace's settings."""
        return json_response(rapport.runtime(who.workspace_id).settings.to_json())

    @api.patch("/settings")
    async def patch_settings(request: Request, who: Principal = Depends(scoped("settings:write"))) -> Response:  # noqa: B008
        """Change workspace settings (PII fields, consent mapping, identity rules, dedupe, time zone)."""
        body = parse_json(await read_limited(request, 64 * 1024))
        if not isinstance(body, dict):
            raise ValidationError("the body must be a JSON object", code="invalid_settings")
        merged = {**rapport.runtime(who.workspace_id).settings.to_json(), **body}
        settings = WorkspaceSettings.from_json(merged)
        from rapport.consent.mapping import ConsentMapping
        from rapport.identity.model import IdentityRules

        ConsentMapping.from_settings(settings.consent_mapping, rapport.runtime(who.workspace_id).catalog)
        IdentityRules.from_settings(settings.identity)
        now = rapport.clock.now_ms()

        def job(conn: Conn) -> None:
            ws_sql.update_settings(conn, who.workspace_id, settings.to_json())
            ws_sql.audit(conn, who.workspace_id, who.actor, "settings.update", who.workspace_id, body, now)
        await run_in_threadpool(rapport.db.write, job)
        rapport.invalidate(who.workspace_id)
        return json_response(settings.to_json())

    @api.get("/settings/identity-secret")
    def identity_secret(who: Principal = Depends(scoped("settings:write"))) -> Response:  # noqa: B008
        """The workspace's identity-verification secret: your server signs a user id with it (`user_hash`, hex
        HMAC-SHA256) before a browser or app asks `/api/v1/decide` for that user id with the write key. Each read
        is audited."""
        rt = rapport.runtime(who.workspace_id)
        now = rapport.clock.now_ms()
        shown = verification.described(rapport.keyring, rt, now)
        rapport.db.write(lambda c: ws_sql.audit(c, who.workspace_id, who.actor, "settings.identity_secret.read",
                                                who.workspace_id, {"version": rt.identity_version}, now))
        return json_response(shown)

    @api.post("/settings/identity-secret/rotate")
    async def rotate_identity_secret(request: Request,
                                     who: Principal = Depends(scoped("settings:write"))) -> Response:  # noqa: B008
        """Replace the identity-verification secret (a new version derived from the workspace key). Hashes made
        with the old one are still accepted for `grace` (default `24h`, at most `30d`; `"0"` refuses them at once,
        after a leak). Audited; answers with the new secret."""
        raw = await read_limited(request, 1024)
        body = parse_json(raw) if raw.strip() else {}
        if not isinstance(body, dict) or set(body) - {"grace"}:
            raise ValidationError("the body is optional and may hold only 'grace', e.g. {\"grace\": \"24h\"}",
                                  code="invalid_request")
        grace = verification.grace_of(body.get("grace"))
        rt = rapport.runtime(who.workspace_id)
        now = rapport.clock.now_ms()
        await run_in_threadpool(rapport.db.write, lambda c: verification.rotate(c, rt, now, grace, who.actor))
        rapport.invalidate(who.workspace_id)
        return json_response(verification.described(rapport.keyring, rapport.runtime(who.workspace_id), now))

    @api.get("/audit")
    def audit(after: int = 0, limit: int = Query(100, ge=1, le=1000),
              who: Principal = Depends(scoped("settings:write"))) -> Response:  # noqa: B008
        """The workspace's append-only audit log."""
        rows = rapport.db.read(lambda c: ws_sql.audit_entries(c, who.workspace_id, after, limit))
        return json_response({"entries": [{"seq": r[0], "actor": r[1], "action": r[2], "target": r[3],
                                           "detail": orjson.loads(r[4]), "at": to_iso(r[5])} for r in rows]})

    api.include_router(segments.router(rapport, scoped))
    api.include_router(journeys.router(rapport, scoped))
    api.include_router(templates.router(rapport, scoped))
    api.include_router(experiments.router(rapport, scoped))
    api.include_router(models.router(rapport, scoped))
    api.include_router(insights.router(rapport, scoped))
    return api
