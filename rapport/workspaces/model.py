"""Workspace values: roles and their scopes, settings, the authenticated principal."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

from rapport.errors import ValidationError
from rapport.types import JsonObject, WorkspaceId

if TYPE_CHECKING:
    from rapport.experiments.assign import GlobalHoldout

Role = Literal["admin", "marketer", "analyst", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "marketer", "analyst", "viewer")
CredentialKind = Literal["write_key", "admin_token"]

Scope = Literal[
    "profiles:read", "profiles:write", "events:read", "consent:read", "consent:write",
    "resources:read", "resources:write", "quarantine:read", "quarantine:write", "settings:write",
    "credentials:write", "segments:read", "segments:write", "journeys:read", "journeys:write",
    "experiments:read", "models:read", "models:write", "reports:read",
]

ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    "admin": frozenset(Scope.__args__),  # type: ignore[attr-defined]
    "marketer": frozenset({"profiles:read", "events:read", "consent:read", "consent:write",
                           "resources:read", "resources:write", "segments:read", "segments:write",
                           "journeys:read", "journeys:write", "experiments:read", "models:read", "reports:read"}),
    "analyst": frozenset({"profiles:read", "events:read", "consent:read", "resources:read", "quarantine:read",
                          "segments:read", "journeys:read", "experiments:read", "models:read", "models:write",
                          "reports:read"}),
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
    frequency_caps: tuple[JsonObject, ...] = ()
    """Caps on messages per person, counted in their calendar days: ``{"scope": "channel" | "tag" | "global",
    "limit": N, "period_days": D, "channel": name?, "tag": name?}``."""
    seed_lists: JsonObject = field(default_factory=dict)
    """Named lists of the team's addresses that journey test sends go to (``rapport.journeys.proofs``)."""
    pii_print: JsonObject = field(default_factory=dict)
    """Per channel (email, web, app, inapp, push, sms, offline), the PII fields its templates and content blocks
    may print, replacing the default policy of ``rapport.content.pii`` for that channel."""
    min_cell_count: int = 10
    """Reports suppress a cell counting fewer people than this (``rapport.analytics.kpis``)."""
    global_holdout: JsonObject | None = None
    """``{"salt": S, "percent": P}``: the workspace's global control group. The people it holds enter no
    experiment and get no marketing message from any journey (``necessary`` messages still go), so the overall
    effect of all messaging can be measured against them."""
    identity_verification: bool = True
    """A write-key caller (a browser, an app) asking for decisions by ``user_id`` must send its ``user_hash``:
    HMAC-SHA256 of the user id under the workspace's identity-verification secret, computed by the customer's
    own server. Otherwise anyone holding the public write key could ask what any user id is shown. Calls by
    ``anonymous_id`` (random, held by the browser) need none."""

    _FIELDS = ("pii_fields", "dedupe", "event_purposes", "consent_mapping", "identity", "timezone", "frequency_caps",
               "seed_lists", "pii_print", "min_cell_count", "global_holdout", "identity_verification")

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
        for name in ("dedupe", "identity_verification"):
            if name in data:
                if not isinstance(data[name], bool):
                    raise ValidationError(f"'{name}' must be true or false", code="invalid_settings")
                kw[name] = data[name]
        for name in ("consent_mapping", "identity"):
            if name in data:
                if not isinstance(data[name], dict):
                    raise ValidationError(f"'{name}' must be an object", code="invalid_settings")
                kw[name] = data[name]
        if "timezone" in data:
            kw["timezone"] = _timezone(data["timezone"])
        if "frequency_caps" in data:
            kw["frequency_caps"] = _caps(data["frequency_caps"])
        if "seed_lists" in data:
            from rapport.journeys.proofs import seed_lists

            kw["seed_lists"] = seed_lists(data["seed_lists"])
        if "pii_print" in data:
            from rapport.content.pii import print_policy

            kw["pii_print"] = print_policy(data["pii_print"])
        if "min_cell_count" in data:
            value = data["min_cell_count"]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
                raise ValidationError("'min_cell_count' must be a whole number from 1 to 1000000",
                                      code="invalid_settings")
            kw["min_cell_count"] = value
        if "global_holdout" in data:
            kw["global_holdout"] = _global_holdout(data["global_holdout"])
        return cls(**kw)

    def holdout(self) -> GlobalHoldout | None:
        """The global holdout as the assignment code uses it, or None when the workspace has none."""
        from rapport.experiments.assign import GlobalHoldout

        value = self.global_holdout
        if not value:
            return None
        percent = value["percent"]
        return GlobalHoldout(str(value["salt"]), percent if isinstance(percent, int) else Fraction(str(percent)))

    def to_json(self) -> JsonObject:
        return {"pii_fields": list(self.pii_fields), "dedupe": self.dedupe,
                "event_purposes": list(self.event_purposes), "consent_mapping": self.consent_mapping,
                "identity": self.identity, "timezone": self.timezone, "frequency_caps": list(self.frequency_caps),
                "seed_lists": self.seed_lists, "pii_print": self.pii_print, "min_cell_count": self.min_cell_count,
                "global_holdout": self.global_holdout, "identity_verification": self.identity_verification}


CAP_FIELDS = ("scope", "limit", "period_days", "channel", "tag")


def _caps(value: Any) -> tuple[JsonObject, ...]:
    """Frequency caps as the send gate reads them; each one checked by building it."""
    from rapport.journeys.gate import FrequencyCap

    expected = ('a list of caps such as {"scope": "channel", "channel": "email", "limit": 2, "period_days": 7} '
                '(scope channel, tag or global)')
    if not isinstance(value, list):
        raise ValidationError(f"'frequency_caps' must be {expected}", code="invalid_settings")
    out = []
    for index, cap in enumerate(value):
        where = f"frequency_caps[{index}]"
        if not isinstance(cap, dict) or set(cap) - set(CAP_FIELDS) or cap.get("scope") not in (
                "channel", "tag", "global"):
            raise ValidationError(f"{where} is not a cap; expected {expected}", code="invalid_settings")
        limit, days = cap.get("limit"), cap.get("period_days", 1)
        if not (isinstance(limit, int) and isinstance(days, int)) or isinstance(limit, bool) or isinstance(days, bool):
            raise ValidationError(f"{where}: 'limit' and 'period_days' must be whole numbers",
                                  code="invalid_settings")
        for name in ("channel", "tag"):
            if cap.get(name) is not None and not isinstance(cap[name], str):
                raise ValidationError(f"{where}: {name!r} must be a name", code="invalid_settings")
        FrequencyCap(cap["scope"], limit, days, cap.get("channel"), cap.get("tag"))
        out.append({"scope": cap["scope"], "limit": limit, "period_days": days,
                    **{k: cap[k] for k in ("channel", "tag") if cap.get(k) is not None}})
    return tuple(out)


def _global_holdout(value: Any) -> JsonObject | None:
    """``{"salt", "percent"}`` with a salt of its own and a percent in (0, 50]; null removes the holdout."""
    if value is None:
        return None
    expected = 'an object such as {"salt": "gh-2026", "percent": 5} (percent above 0, at most 50), or null'
    if not isinstance(value, dict) or set(value) != {"salt", "percent"}:
        raise ValidationError(f"'global_holdout' must be {expected}", code="invalid_settings")
    salt, percent = value["salt"], value["percent"]
    if not isinstance(salt, str) or not salt.strip() or "\x1f" in salt:
        raise ValidationError("'global_holdout.salt' must be a non-empty name", code="invalid_settings")
    if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 < percent <= 50:
        raise ValidationError(f"'global_holdout.percent' must be above 0 and at most 50; expected {expected}",
                              code="invalid_settings")
    return {"salt": salt, "percent": percent}


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
