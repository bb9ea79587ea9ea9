"""Map consent carried in SDK event context (Segment, RudderStack) to Rapport purposes.

Default Segment categories (matched ignoring case, spaces and punctuation, so ``Strictly
Necessary`` and ``strictly_necessary`` are one category):

- Necessary, Strictly Necessary, Essential, C0001 → ``necessary`` (known; nothing is recorded)
- Analytics, Performance, Statistics, Marketing and Analytics, C0002 → ``analytics``
- Functional, Personalization, Preferences, C0003 → ``personalization``
- Advertising, Targeting, Marketing, C0004 → ``advertising``
- Email → ``marketing_email``; SMS → ``marketing_sms``; Push → ``marketing_push``

``Marketing`` maps to ``advertising`` because cookie banners use it for ad and tracking cookies;
a grant for messages by email, SMS or push needs its own category (``Email``, ``SMS``, ``Push``).
The ``C000n`` ids are OneTrust's default groups, which Segment's OneTrust wrapper sends as category
names. RudderStack ids are case-sensitive (as RudderStack documents), with OneTrust defaults: C0001
necessary, C0002 analytics (performance), C0003 personalization (functional), C0004 advertising
(targeting). Workspace settings add or replace categories; mapping a category to ``[]`` marks it
known while recording nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from rapport.consent.model import NECESSARY, ConsentState
from rapport.consent.purposes import Catalog
from rapport.errors import ValidationError

SEGMENT_DEFAULTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Necessary": (NECESSARY,),
        "Strictly Necessary": (NECESSARY,),
        "Essential": (NECESSARY,),
        "C0001": (NECESSARY,),
        "Analytics": ("analytics",),
        "Performance": ("analytics",),
        "Statistics": ("analytics",),
        "Marketing and Analytics": ("analytics",),
        "C0002": ("analytics",),
        "Functional": ("personalization",),
        "Personalization": ("personalization",),
        "Preferences": ("personalization",),
        "C0003": ("personalization",),
        "Advertising": ("advertising",),
        "Targeting": ("advertising",),
        "Marketing": ("advertising",),
        "C0004": ("advertising",),
        "Email": ("marketing_email",),
        "SMS": ("marketing_sms",),
        "Push": ("marketing_push",),
    }
)
RUDDERSTACK_DEFAULTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "C0001": (NECESSARY,),
        "C0002": ("analytics",),
        "C0003": ("personalization",),
        "C0004": ("advertising",),
    }
)
_SOURCES = ("rudderstack", "segment")
_RUDDERSTACK_LISTS: tuple[tuple[str, ConsentState], ...] = (
    ("allowedConsentIds", "granted"),
    ("deniedConsentIds", "denied"),
)
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


class Extracted(NamedTuple):
    """Consent intents read from one event context, and the categories no mapping knows."""

    intents: list[tuple[str, ConsentState]]
    """``(purpose, state)`` pairs, one per purpose; a denial wins over a grant for the same purpose."""
    unknown: list[str]
    """Unmapped categories as ``segment:<name>`` or ``rudderstack:<id>``, for the caller to flag."""


def segment_key(category: str) -> str:
    """The form Segment category names are matched in: lower case, letters and digits only."""
    return _NON_ALNUM.sub("", category.casefold())


def _show(value: object) -> str:
    """``repr`` of a caller's value, cut short so an error message stays readable."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _invalid_context(message: str, path: str) -> ValidationError:
    return ValidationError(message, code="invalid_consent_context", details=[{"path": path}])


def _invalid_settings(message: str, path: str) -> ValidationError:
    return ValidationError(message, code="invalid_consent_mapping", details=[{"path": path}])


def _normalize_segment(table: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    return {segment_key(k): v for k, v in table.items()}


@dataclass(frozen=True, slots=True)
class ConsentMapping:
    """Category → purposes tables for Segment (keys in ``segment_key`` form) and RudderStack."""

    segment: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType(_normalize_segment(SEGMENT_DEFAULTS))
    )
    rudderstack: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: RUDDERSTACK_DEFAULTS)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None, catalog: Catalog | None = None) -> ConsentMapping:
        """The defaults overlaid by workspace settings ``{"segment": {...}, "rudderstack": {...}}``.

        Each table maps a category to a list of purpose names (a single name is accepted too).
        With ``catalog``, every purpose named in ``settings`` must exist in it.
        """
        if settings is None:
            return cls()
        if not isinstance(settings, Mapping):
            raise _invalid_settings(f"consent mapping must be a mapping, got {type(settings).__name__}", "")
        for key in settings:
            if key not in _SOURCES:
                raise _invalid_settings(
                    f"unknown consent mapping source {key!r}; expected one of 'rudderstack', 'segment'", key
                )
        segment = _normalize_segment(SEGMENT_DEFAULTS)
        for category, purposes in _table(settings, "segment", catalog).items():
            segment[segment_key(category)] = purposes
        rudderstack = dict(RUDDERSTACK_DEFAULTS)
        rudderstack.update(_table(settings, "rudderstack", catalog))
        return cls(MappingProxyType(segment), MappingProxyType(rudderstack))

    def extract(self, context: Mapping[str, Any]) -> Extracted:
        """Consent intents from an event ``context``; raises ``ValidationError`` for malformed shapes.

        Reads Segment's ``consent.categoryPreferences`` (``{"Analytics": true}``) and RudderStack's
        ``consentManagement`` (``allowedConsentIds`` / ``deniedConsentIds``; the older form with
        only ``deniedConsentIds`` yields denials only). ``null`` anywhere counts as absent.
        ``necessary`` never appears in the intents: it is always allowed.
        """
        if not isinstance(context, Mapping):
            raise _invalid_context(f"event context must be an object, got {type(context).__name__}", "context")
        states: dict[str, ConsentState] = {}
        unknown: list[str] = []
        consent = context.get("consent")
        if consent is not None:
            if not isinstance(consent, Mapping):
                raise _invalid_context(
                    f"context.consent must be an object, got {type(consent).__name__}", "context.consent"
                )
            prefs = consent.get("categoryPreferences")
            if prefs is not None:
                path = "context.consent.categoryPreferences"
                if not isinstance(prefs, Mapping):
                    raise _invalid_context(f"{path} must be an object, got {type(prefs).__name__}", path)
                for category, value in prefs.items():
                    if not isinstance(value, bool):
                        raise _invalid_context(
                            f"{path}.{category} must be true or false, got {_show(value)}", f"{path}.{category}"
                        )
                    purposes = self.segment.get(segment_key(str(category)))
                    if purposes is None:
                        unknown.append(f"segment:{category}")
                    else:
                        _merge(states, purposes, "granted" if value else "denied")
        management = context.get("consentManagement")
        if management is not None:
            path = "context.consentManagement"
            if not isinstance(management, Mapping):
                raise _invalid_context(f"{path} must be an object, got {type(management).__name__}", path)
            for key, state in _RUDDERSTACK_LISTS:
                for consent_id in _ids(management.get(key), f"{path}.{key}"):
                    purposes = self.rudderstack.get(consent_id)
                    if purposes is None:
                        unknown.append(f"rudderstack:{consent_id}")
                    else:
                        _merge(states, purposes, state)
        return Extracted(list(states.items()), list(dict.fromkeys(unknown)))


def _merge(states: dict[str, ConsentState], purposes: tuple[str, ...], state: ConsentState) -> None:
    for purpose in purposes:
        if purpose != NECESSARY and states.get(purpose) != "denied":
            states[purpose] = state


def _ids(value: object, path: str) -> list[str]:
    """Consent ids from a list of strings, or from the keys of an ``{id: label}`` object."""
    if value is None:
        return []
    items = list(value) if isinstance(value, list | Mapping) else None
    if items is None or not all(isinstance(i, str) for i in items):
        raise _invalid_context(f"{path} must be a list of strings, got {_show(value)}", path)
    return items


def _table(settings: Mapping[str, Any], source: str, catalog: Catalog | None) -> dict[str, tuple[str, ...]]:
    raw = settings.get(source)
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _invalid_settings(f"consent mapping {source!r} must map categories to purposes", source)
    table: dict[str, tuple[str, ...]] = {}
    for category, purposes in raw.items():
        path = f"{source}.{category}"
        names = [purposes] if isinstance(purposes, str) else purposes
        if not isinstance(category, str) or not isinstance(names, list | tuple):
            raise _invalid_settings(
                f"consent mapping {path}: expected a list of purposes, got {_show(purposes)}",
                path,
            )
        if not all(isinstance(n, str) for n in names):
            raise _invalid_settings(
                f"consent mapping {path}: purposes must be strings, got {_show(purposes)}",
                path,
            )
        if catalog is not None:
            for name in names:
                catalog.get(name)
        table[category] = tuple(names)
    return table
