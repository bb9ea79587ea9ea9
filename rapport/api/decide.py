"""The decision API: ``POST /api/v1/decide`` with a write key (browser, app) or an admin token."""

from __future__ import annotations

from fastapi import APIRouter

from rapport.core import Rapport


def router(rapport: Rapport) -> APIRouter:
    api = APIRouter(tags=["decisions"])
    return api
