"""The one error shape of every API: ``{"code", "message", "details"}`` at the top level."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from rapport.api.json import json_response
from rapport.errors import Overloaded, RapportError

log = logging.getLogger("rapport.api")


def error_response(status: int, code: str, message: str, details: list[Any] | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    return json_response({"code": code, "message": message, "details": details or []}, status, headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(RapportError)
    async def rapport_error(_: Request, exc: RapportError) -> Response:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Overloaded) else None
        if exc.status >= 500:
            log.error("request failed: %s", exc.message)
        return error_response(exc.status, exc.code, exc.message, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, exc: RequestValidationError) -> Response:
        details = [{"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
                   for e in exc.errors()]
        return error_response(400, "invalid_request", "the request does not match the API's schema", details)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), [], dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")
