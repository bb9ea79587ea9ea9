"""Workspace values: roles and their scopes, settings, the authenticated principal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rapport.errors import ValidationError
from rapport.types import JsonObject, WorkspaceId

Role = Literal["admin", "marketer", "analyst", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "marketer", "analyst", "viewer")
CredentialKind = Literal["write_key", "admin_token"]

Scope = Literal[
    "profiles:read", "profiles:write", "events:read", "consent:read", "consent:write",
    "resources:read", "resources:write", "quarantine:read", "quarantine:write", "settings:write",
    "credentials:write", "segments:read", "segments:write",
]

ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    "admin": frozenset(Scope.__args__),  # type: ignore[attr-defined]
    "marketer": frozenset({"profiles:read", "events:read", "consent:read", "consent:write",
                           "resources:read", "resources:write", "segments:read", "segments:write"}),
    "analyst": frozenset({"profiles:read", "events:read", "consent:read", "resources:read", "quarantine:read",
                          "segments:read"}),
    "viewer": frozenset({"resources:read"}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a write key (ingest only) or an admin token with a role, in one workspace."""

    workspace_id: WorkspaceId
    credential_id: str
    kind: CredentialKind
    role: Role | None

    def can(self, scope: Scope) -> bool:
        return self.kind == "admin_token" and self.role is not None and scope in ROLE_SCOPES[self.role]

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.credential_id}"


DEFAULT_PII_FIELDS = ("email", "phone", "name", "first_name", "last_name", "firstName", "lastName",
                      "address", "ip")


@dataclass(frozen=True, slots=True)
class WorkspaceSettings:
    """Per-workspace behaviour; stored as JSON, changed through the admin API."""

    pii_fields: tuple[str, ...] = DEFAULT_PII_FIELDS
    dedupe: bool = True
    event_purposes: tuple[str, ...] = ("analytics",)
    """Purposes every event serves; without consent for them an event is kept minimized."""
    consent_mapping: JsonObject = field(default_factory=dict)
    identity: JsonObject = field(default_factory=dict)
    timezone: str = "UTC"

    _FIELDS = ("pii_fields", "dedupe", "event_purposes", "consent_mapping", "identity", "timezone")

    @classmethod
    def from_json(cls, data: JsonObject) -> WorkspaceSettings:
        unknown = sorted(set(data) - set(cls._FIELDS))
        if unknown:
            raise ValidationError(
                f"unknown workspace setting(s) {', '.join(map(repr, unknown))}; expected {', '.join(cls._FIELDS)}",
                code="invalid_settings",
            )
        kw: dict[str, Any] = {}
        for name in ("pii_fields", "event_purposes"):
            if name in data:
                value = data[name]
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValidationError(f"'{name}' must be a list of strings", code="invalid_settings")
                kw[name] = tuple(value)
        if "dedupe" in data:
            if not isinstance(data["dedupe"], bool):
                raise ValidationError("'dedupe' must be true or false", code="invalid_settings")
            kw["dedupe"] = data["dedupe"]
        for name in ("consent_mapping", "identity"):
            if name in data:
                if not isinstance(data[name], dict):
                    raise ValidationError(f"'{name}' must be an object", code="invalid_settings")
                kw[name] = data[name]
        if "timezone" in data:
            kw["timezone"] = _timezone(data["timezone"])
        return cls(**kw)

    def to_json(self) -> JsonObject:
        return {"pii_fields": list(self.pii_fields), "dedupe": self.dedupe,
                "event_purposes": list(self.event_purposes), "consent_mapping": self.consent_mapping,
                "identity": self.identity, "timezone": self.timezone}


def _timezone(value: Any) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(value, str):
        raise ValidationError("'timezone' must be an IANA time zone name", code="invalid_settings")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"unknown time zone {value!r}; expected an IANA name such as 'Europe/Paris'",
                              code="invalid_settings") from None
    return value
