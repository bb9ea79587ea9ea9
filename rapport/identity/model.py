"""Frozen values of identity resolution: identifiers, rules, profile references and decisions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from rapport.errors import ValidationError

BUILTIN_TYPES: tuple[str, ...] = ("user_id", "email", "phone", "device_id", "anonymous_id")
"""Identifier types Rapport knows; workspaces may add their own names."""

TYPE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
"""What an identifier type name looks like: lower-case snake case, at most 64 characters."""

ConflictReason = Literal["limit", "blocked"]


def valid_type_name(name: object) -> bool:
    """True when ``name`` can name an identifier type."""
    if name in _VALID_NAMES:
        return True
    valid = isinstance(name, str) and TYPE_NAME.fullmatch(name) is not None
    if valid and len(_VALID_NAMES) < 1024:
        _VALID_NAMES.add(str(name))
    return valid


_VALID_NAMES: set[str] = set()
"""Names already found valid: every identifier of every event and decision is checked (bounded)."""


@dataclass(frozen=True, slots=True, order=True)
class Identifier:
    """One normalized identifier of a person, e.g. ``email:ada@example.com``; orders by (type, value)."""

    type: str
    value: str

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


@dataclass(frozen=True, slots=True)
class IdentityRules:
    """How many identifiers of a type one profile may hold, and which types lead resolution.

    ``limits`` maps a type to its maximum per profile; a type without an entry is unlimited.
    ``priority`` ranks types; types not listed rank after all listed ones, alphabetically.
    """

    limits: Mapping[str, int] = field(hash=False)
    priority: tuple[str, ...]

    def __post_init__(self) -> None:
        problems = _rule_problems(self.limits, self.priority)
        if problems:
            raise ValidationError(
                "invalid identity rules: " + "; ".join(p["message"] for p in problems),
                code="invalid_identity_rules",
                details=problems,
            )
        object.__setattr__(self, "limits", MappingProxyType(dict(self.limits)))
        object.__setattr__(self, "priority", tuple(self.priority))

    def __reduce__(self) -> tuple[type[IdentityRules], tuple[dict[str, int], tuple[str, ...]]]:
        # The read-only view of ``limits`` cannot be pickled or deep-copied; rebuild from a dict.
        return (IdentityRules, (dict(self.limits), self.priority))

    def rank(self, type: str) -> tuple[int, str]:
        """Sort key of an identifier type: listed types by position, then the rest by name."""
        try:
            return (self.priority.index(type), "")
        except ValueError:
            return (len(self.priority), type)

    def limit(self, type: str) -> int | None:
        """The most identifiers of ``type`` one profile may hold, or None for no limit."""
        return self.limits.get(type)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> IdentityRules:
        """Rules from workspace settings ``{"limits": {type: n}, "priority": [type, ...]}``.

        A missing key keeps its default (``DEFAULT_RULES``); ``"limits": {}`` lifts every limit.
        Raises ``ValidationError`` naming each bad key or value.
        """
        if not isinstance(settings, Mapping):
            raise ValidationError(
                f"identity rules must be an object with keys 'limits' and 'priority', got {type(settings).__name__}",
                code="invalid_identity_rules",
            )
        problems: list[dict[str, str]] = []
        unknown = sorted(str(k) for k in settings if k not in ("limits", "priority"))
        for key in unknown:
            problems.append(_problem(key, f"unknown key {key!r}; expected one of 'limits', 'priority'"))
        limits = settings.get("limits", DEFAULT_RULES.limits)
        priority = settings.get("priority", DEFAULT_RULES.priority)
        if not isinstance(limits, Mapping):
            problems.append(_problem("limits", "'limits' must map identifier types to whole numbers"))
            limits = {}
        if isinstance(priority, str) or not isinstance(priority, list | tuple):
            problems.append(_problem("priority", "'priority' must be a list of identifier types"))
            priority = ()
        problems.extend(_rule_problems(limits, tuple(priority)))
        if problems:
            raise ValidationError(
                "invalid identity rules: " + "; ".join(p["message"] for p in problems),
                code="invalid_identity_rules",
                details=problems,
            )
        return cls(limits=dict(limits), priority=tuple(priority))


def _rule_problems(limits: Mapping[Any, Any], priority: tuple[Any, ...]) -> list[dict[str, str]]:
    problems: list[dict[str, str]] = []
    name_hint = "expected lower-case letters, digits and '_', starting with a letter (e.g. 'user_id')"
    for name, limit in limits.items():
        where = f"limits.{name}"
        if not valid_type_name(name):
            problems.append(_problem(where, f"bad identifier type {name!r} in limits; {name_hint}"))
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            problems.append(
                _problem(
                    where,
                    f"bad limit {limit!r} for {name!r}; expected a whole number of at least 1 "
                    "(leave the type out for no limit)",
                )
            )
    seen: set[Any] = set()
    for position, name in enumerate(priority):
        where = f"priority.{position}"
        if not valid_type_name(name):
            problems.append(_problem(where, f"bad identifier type {name!r} in priority; {name_hint}"))
        elif name in seen:
            problems.append(_problem(where, f"identifier type {name!r} is listed twice in priority"))
        seen.add(name)
    return problems


def _problem(where: str, message: str) -> dict[str, str]:
    return {"field": where, "message": message}


DEFAULT_RULES = IdentityRules(limits={"user_id": 1}, priority=BUILTIN_TYPES)


@dataclass(frozen=True, slots=True)
class ProfileRef:
    """A live profile as resolution sees it: ``seq`` is its creation order (smaller is older)."""

    id: str
    seq: int
    identifiers: frozenset[Identifier]


@dataclass(frozen=True, slots=True)
class Merge:
    """``loser`` joins ``winner``, bringing the identifiers it held when the merge was applied."""

    winner: str
    loser: str
    identifiers: frozenset[Identifier]


@dataclass(frozen=True, slots=True)
class Conflict:
    """An identifier that could not join ``target``: held by ``holder`` (None if new) or over a limit."""

    identifier: Identifier
    holder: str | None
    target: str
    reason: ConflictReason


@dataclass(frozen=True, slots=True)
class Resolution:
    """What one event does to the identity graph; apply ``merges`` in order, then ``attach``.

    ``profile_id`` is the profile the event belongs to; ``created`` says it is the new profile.
    """

    profile_id: str
    created: bool
    attach: tuple[Identifier, ...]
    merges: tuple[Merge, ...]
    conflicts: tuple[Conflict, ...]


@dataclass(frozen=True, slots=True)
class MergeRecord:
    """A logged merge: which event joined ``loser`` into ``winner`` and with which identifiers."""

    id: str
    winner: str
    loser: str
    identifiers: frozenset[Identifier]
    event_id: str
    undone: bool = False


@dataclass(frozen=True, slots=True)
class ConflictRecord:
    """A logged conflict with the event that raised it."""

    event_id: str
    conflict: Conflict
