"""Admin routes: models."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter

from rapport.core import Rapport
from rapport.workspaces.model import Principal, Scope


def router(rapport: Rapport, scoped: Callable[[Scope], Callable[..., Principal]]) -> APIRouter:
    api = APIRouter(tags=["models"])
    return api
