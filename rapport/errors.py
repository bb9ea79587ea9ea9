"""The error tree of Rapport; every error the API returns comes from one of these.

    RapportError
    ├── UserError                 bad input from a caller; carries a stable ``code`` and HTTP status
    │   ├── ValidationError       a payload or resource breaks its schema (400/422)
    │   ├── AuthError             missing or wrong credentials (401)
    │   ├── ForbiddenError        credentials valid but not allowed here (403)
    │   ├── NotFoundError         no such thing in this workspace (404)
    │   ├── ConflictError         the request contradicts stored state (409)
    │   └── PayloadTooLarge       over a size limit (413)
    ├── Overloaded                the server sheds load; the caller retries after ``retry_after`` (429)
    ├── Transient                 a dependency failed in a way worth retrying
    └── Terminal                  a dependency failed in a way that retrying will not fix
"""

from __future__ import annotations

from typing import Any


class RapportError(Exception):
    """Root of every error raised on purpose by Rapport."""

    code = "internal_error"
    status = 500

    def __init__(self, message: str, *, code: str | None = None, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details: list[Any] = details or []

    def to_json(self) -> dict[str, Any]:
        """The one error shape of every API: ``{"code", "message", "details"}``."""
        return {"code": self.code, "message": self.message, "details": self.details}


class UserError(RapportError):
    """The caller sent something we cannot accept."""

    code = "bad_request"
    status = 400


class ValidationError(UserError):
    code = "invalid"
    status = 400


class AuthError(UserError):
    code = "unauthorized"
    status = 401


class ForbiddenError(UserError):
    code = "forbidden"
    status = 403


class NotFoundError(UserError):
    code = "not_found"
    status = 404


class ConflictError(UserError):
    code = "conflict"
    status = 409


class PayloadTooLarge(UserError):
    code = "payload_too_large"
    status = 413


class Overloaded(RapportError):
    """Too much work queued; the caller should retry after ``retry_after`` seconds."""

    code = "overloaded"
    status = 429

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Transient(RapportError):
    """A dependency failed in a way that is worth retrying."""

    code = "transient"
    status = 503


class Terminal(RapportError):
    """A dependency failed in a way that retrying will not fix."""

    code = "terminal"
    status = 502
