"""The Segment HTTP Tracking API: /v1/track, identify, page, screen, group, alias and batch.

A 200 is sent only after the batch is committed. Bad items of a batch are reported by index
while the good ones are stored; a single-message call with a bad message gets a 400.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from rapport.api import metrics
from rapport.api.body import parse_json, read_limited
from rapport.api.json import json_response
from rapport.core import Rapport
from rapport.decisions import round_trip
from rapport.errors import AuthError, ForbiddenError, ValidationError
from rapport.ingestion.model import MAX_BATCH_BYTES, MAX_EVENT_BYTES, MESSAGE_TYPES, ItemError, MessageType
from rapport.ingestion.parse import ItemInvalid, parse_batch, parse_message
from rapport.ingestion.plans import check_plans
from rapport.types import Json
from rapport.workspaces.model import Principal


def write_key_from(request: Request, payload: Json) -> str:
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        try:
            user = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").split(":", 1)[0]
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError("malformed Basic authorization header", code="invalid_credentials") from None
        if user:
            return user
    if isinstance(payload, dict) and isinstance(payload.get("writeKey"), str):
        return str(payload["writeKey"])
    raise AuthError("missing write key: send HTTP Basic auth with the write key as user name",
                    code="missing_credentials")


def ingest_principal(rapport: Rapport, key: str) -> Principal:
    principal = rapport.authenticate(key)
    if principal.kind != "write_key":
        raise ForbiddenError("this credential cannot ingest events; use the workspace's write key",
                             code="wrong_credential_kind")
    return principal


def router(rapport: Rapport) -> APIRouter:
    api = APIRouter(tags=["tracking"])

    async def handle(request: Request, implied: MessageType | None) -> Response:
        started = time.perf_counter()
        endpoint = implied or "batch"
        try:
            limit = MAX_BATCH_BYTES if implied is None else MAX_EVENT_BYTES
            body = await read_limited(request, limit)
            payload = parse_json(body)
            principal = ingest_principal(rapport, write_key_from(request, payload))
            wanted = round_trip.requested(request.query_params.get("decide"), single=implied is not None)
            if wanted:
                round_trip.check(rapport, principal.workspace_id, wanted)
            received = rapport.clock.now_ms()

            def new_id() -> str:
                return rapport.clock.new_id("msg")

            errors: list[ItemError] = []
            if implied is None:
                indexed, errors = parse_batch(payload, received_at=received, new_id=new_id)
            else:
                try:
                    indexed = [(0, parse_message(payload, implied_type=implied, received_at=received,
                                                 batch_sent_at=None, batch_context=None, new_id=new_id,
                                                 size=len(body)))]
                except ItemInvalid as exc:
                    raise ValidationError(exc.message, code=exc.code) from None
            rt = rapport.runtime(principal.workspace_id)
            accepted, quarantined, plan_errors = check_plans(rt.plans, indexed)
            errors.extend(plan_errors)
            if implied is not None and plan_errors:
                raise ValidationError(plan_errors[0].message, code=plan_errors[0].code)
            user_hash = request.query_params.get("user_hash")
            who = round_trip.person(rapport, principal.workspace_id, indexed[0][1], user_hash) if wanted else None
            if not accepted and not quarantined:
                if errors:
                    raise ValidationError(f"all {len(errors)} message(s) were refused", code="invalid_batch",
                                          details=[e.to_json() for e in sorted(errors, key=lambda e: e.index)])
                return json_response({"success": True})
            future = rapport.ingest(principal.workspace_id, accepted, quarantined)
            result = await asyncio.wrap_future(future)
            metrics.record_ingest(endpoint, result, len(errors), time.perf_counter() - started)
            out: dict[str, Json] = {"success": True}
            if errors:
                out["errors"] = [e.to_json() for e in sorted(errors, key=lambda e: e.index)]
            if result.quarantined:
                out["quarantined"] = result.quarantined
            if who is not None:
                out["decisions"] = await run_in_threadpool(round_trip.decisions, rapport, principal.workspace_id,
                                                           indexed[0][1], wanted, who, user_hash)
            return json_response(out)
        except Exception as exc:
            metrics.record_rejection(endpoint, exc)
            raise

    def single(implied: MessageType) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await handle(request, implied)

        endpoint.__name__ = f"ingest_{implied}"
        endpoint.__doc__ = f"Ingest one `{implied}` message (Segment spec)."
        return endpoint

    for kind in MESSAGE_TYPES:
        api.add_api_route(f"/v1/{kind}", single(kind), methods=["POST"])

    async def batch(request: Request) -> Response:
        """Ingest a batch of messages: `{"batch": [...], "sentAt": ..., "context": ...}`."""
        return await handle(request, None)

    api.add_api_route("/v1/batch", batch, methods=["POST"])
    api.add_api_route("/v1/import", batch, methods=["POST"], include_in_schema=False)
    return api
