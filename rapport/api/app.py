"""The ASGI application: tracking API, admin API, health, metrics, and the background worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping

import httpx
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from rapport import __version__
from rapport.api import admin, decide, erasure, errors, feedback, inbox, metrics, preferences, tracking
from rapport.api.json import json_response
from rapport.channels.base import Channel
from rapport.core import Rapport
from rapport.journeys import service as journeys_service
from rapport.profiles import backfill
from rapport.segments import service as segments_service
from rapport.storage.sql import profiles as profiles_sql
from rapport.storage.sql import workspaces as ws_sql
from rapport.types import WorkspaceId

log = logging.getLogger("rapport.worker")


def run_backfills(rapport: Rapport) -> None:
    """One pass: register series new definitions need and advance every backfill by a chunk."""
    for ws_id, _name, _created in rapport.db.read(ws_sql.list_workspaces):
        rt = rapport.runtime(WorkspaceId(ws_id))
        rapport.db.write(lambda c, rt=rt: backfill.register_missing(c, rt, rapport.clock))  # type: ignore[misc]
        while not rapport.db.write(lambda c, rt=rt: backfill.backfill_chunk(  # type: ignore[misc]
                c, rt, rapport.keyring, rapport.clock)):
            pass


def run_segments(rapport: Rapport) -> None:
    """One pass: populate segments whose new version has never been computed (once the series they
    read are live), evaluate profiles whose time-based flip is due, then refresh the segments whose
    ``refresh`` cadence has come round."""
    for ws_id, _name, _created in rapport.db.read(ws_sql.list_workspaces):
        rt = rapport.runtime(WorkspaceId(ws_id))
        if not rt.segments:
            continue
        pending = rapport.db.read(lambda c, rt=rt: segments_service.pending_refreshes(c, rt))  # type: ignore[misc]
        if pending:
            states = {r[0]: r[2] for r in rapport.db.read(
                lambda c, rt=rt: profiles_sql.series_states(c, rt.id))}  # type: ignore[misc]
            ready = [n for n in pending if all(states.get(s) == "live" for s in segments_service.series_read(
                rt, rt.segments[n]))]
            if ready:
                segments_service.refresh_database(rapport.db, rt, rapport.clock, ready)
        while rapport.db.write(lambda c, rt=rt: segments_service.run_due(c, rt, rapport.clock)):  # type: ignore[misc]
            pass
        # After the due flips, so that the reconciliation finds them already stamped at their instant.
        scheduled = rapport.db.read(lambda c, rt=rt: segments_service.scheduled_refreshes(  # type: ignore[misc]
            c, rt, rapport.clock.now_ms()))
        if scheduled:
            segments_service.refresh_database(rapport.db, rt, rapport.clock, scheduled)


async def run_journeys(rapport: Rapport, engines: journeys_service.Engines) -> None:
    """One pass: feed queued events to each workspace's journeys, step due timers, dispatch due sends."""
    for ws_id, _name, _created in await run_in_threadpool(rapport.db.read, ws_sql.list_workspaces):
        rt = rapport.runtime(WorkspaceId(ws_id))
        if not rt.journeys and not rt.channels:
            continue
        await run_in_threadpool(journeys_service.step_pass, engines, rt)
        await journeys_service.dispatch_pass(engines, rt)


def journey_engines(rapport: Rapport, overrides: Mapping[str, Channel] | None = None) -> journeys_service.Engines:
    settings = rapport.settings
    delivery = journeys_service.Delivery(settings.base_url, settings.environ, overrides,
                                         round(settings.send_lease_seconds * 1000))
    return journeys_service.Engines(rapport.db, rapport.keyring, rapport.clock, delivery)


def create_app(rapport: Rapport, *, worker: bool = True, channels: Mapping[str, Channel] | None = None) -> FastAPI:
    """The server; with ``worker``, the background worker runs beside it (backfills, segment timers and
    refreshes, journeys). ``channels`` replace the workspace's Channel resources by name (a local sink)."""
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_worker(rapport, journey_engines(rapport, channels))) if worker else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="Rapport", version=__version__, lifespan=lifespan,
                  description="Consent-first customer data platform: Segment-compatible tracking and admin API.")
    errors.install(app)
    app.include_router(tracking.router(rapport))
    # Routes are matched in order: the per-page-view decision API comes before the many admin routes.
    app.include_router(decide.router(rapport))
    app.include_router(admin.router(rapport))
    app.include_router(preferences.router(rapport))
    app.include_router(inbox.router(rapport))
    app.include_router(feedback.router(rapport))
    app.include_router(erasure.router(rapport))

    @app.get("/healthz", tags=["operations"])
    def healthz() -> Response:
        """Liveness and readiness: the database answers and the writer keeps up."""
        rapport.db.read(lambda c: c.value("SELECT 1"))
        return json_response({"status": "ok", "backlog": rapport.db.backlog(), "version": __version__})

    @app.get("/metrics", tags=["operations"])
    def prometheus() -> Response:
        """Prometheus metrics."""
        return Response(metrics.render(rapport.db.backlog()), media_type="text/plain; version=0.0.4")

    app.state.rapport = rapport
    return app


async def journey_worker(rapport: Rapport, stop: asyncio.Event, channels: Mapping[str, Channel] | None = None, *,
                         interval: float = 0.5) -> None:
    """Journeys only, until ``stop`` is set (the pass under way finishes first): what ``rapport worker`` runs
    beside the server to send more. On PostgreSQL any number may run (they lease timers and sends with
    ``SKIP LOCKED`` and take a workspace's queued events one consumer at a time); a worker killed at any
    moment loses nothing."""
    engines = journey_engines(rapport, channels)
    async with httpx.AsyncClient() as client:
        engines.client = client
        while not stop.is_set():
            try:
                await run_journeys(rapport, engines)
            except Exception:
                log.exception("journey pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


async def _worker(rapport: Rapport, engines: journeys_service.Engines) -> None:
    async with httpx.AsyncClient() as client:
        engines.client = client
        while True:
            try:
                await run_in_threadpool(run_backfills, rapport)
                await run_in_threadpool(run_segments, rapport)
                await run_journeys(rapport, engines)
            except Exception:
                log.exception("background pass failed")
            await asyncio.sleep(0.5)
