"""The catalog of consent purposes: built-in defaults overlaid by ``ConsentPurpose`` resources."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from rapport.consent.model import NECESSARY, LegalBasis, Purpose, parse_legal_basis
from rapport.durations import parse_duration
from rapport.errors import ValidationError

DEFAULT_PURPOSES: tuple[Purpose, ...] = (
    Purpose(NECESSARY, "contract", "Always allowed: service delivery, security, transactional messages"),
    Purpose("analytics", "consent", "Measure and analyse product usage"),
    Purpose("personalization", "consent", "Tailor content and recommendations"),
    Purpose("marketing_email", "consent", "Marketing messages by email", channel="email"),
    Purpose("marketing_sms", "consent", "Marketing messages by SMS", channel="sms"),
    Purpose("marketing_push", "consent", "Marketing push notifications", channel="push"),
    Purpose("advertising", "consent", "Advertising audiences and ad measurement"),
)

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SPEC_KEYS = frozenset({"kind", "name", "legal_basis", "description", "channel", "default_expiry"})


def _empty() -> Mapping[str, Purpose]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Catalog:
    """The purposes of one workspace, by name. Build with ``Catalog.default()`` or ``from_resources``."""

    purposes: Mapping[str, Purpose] = field(default_factory=_empty)
    ordered: tuple[Purpose, ...] = field(init=False, repr=False, compare=False)
    """The purposes sorted by name (iteration order): every decision and ingested event walks them."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "ordered", tuple(sorted(self.purposes.values(), key=_name)))

    @classmethod
    def of(cls, purposes: Iterable[Purpose]) -> Catalog:
        """A catalog of exactly ``purposes``; ``necessary`` is always added if missing."""
        by_name = {p.name: p for p in DEFAULT_PURPOSES if p.name == NECESSARY}
        for purpose in purposes:
            by_name[purpose.name] = purpose
        return cls(MappingProxyType(by_name))

    @classmethod
    def default(cls) -> Catalog:
        """The built-in purposes."""
        return cls.of(DEFAULT_PURPOSES)

    @classmethod
    def from_resources(cls, specs: Iterable[Mapping[str, Any]]) -> Catalog:
        """The defaults overlaid by ``ConsentPurpose`` resource specs.

        A spec naming a default purpose replaces the fields it gives and keeps the others; a new
        name adds a purpose (legal basis ``consent`` unless given). Raises ``ValidationError`` for
        malformed specs, duplicate names, or a ``necessary`` purpose that would need consent.
        """
        by_name = {p.name: p for p in DEFAULT_PURPOSES}
        seen: set[str] = set()
        for spec in specs:
            purpose = _purpose_from_spec(spec, by_name)
            if purpose.name in seen:
                raise ValidationError(
                    f"consent purpose {purpose.name!r} is defined more than once",
                    code="duplicate_purpose",
                    details=[{"purpose": purpose.name}],
                )
            seen.add(purpose.name)
            by_name[purpose.name] = purpose
        return cls(MappingProxyType(by_name))

    def get(self, name: str) -> Purpose:
        """The purpose called ``name``; raises ``ValidationError`` (``unknown_purpose``) otherwise."""
        purpose = self.purposes.get(name)
        if purpose is not None:
            return purpose
        valid = sorted(self.purposes)
        close = difflib.get_close_matches(str(name), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValidationError(
            f"unknown consent purpose {name!r}{hint}; expected one of {', '.join(map(repr, valid))}",
            code="unknown_purpose",
            details=[{"purpose": name, "valid": valid, "suggestion": close[0] if close else None}],
        )

    def for_channel(self, channel: str) -> tuple[Purpose, ...]:
        """The purposes tied to ``channel`` (e.g. ``email``), sorted by name."""
        return tuple(sorted((p for p in self.purposes.values() if p.channel == channel), key=_name))

    def names(self) -> list[str]:
        """Every purpose name, sorted."""
        return sorted(self.purposes)

    def __contains__(self, name: object) -> bool:
        return name in self.purposes

    def __iter__(self) -> Iterator[Purpose]:
        return iter(self.ordered)

    def __len__(self) -> int:
        return len(self.purposes)


def _name(purpose: Purpose) -> str:
    return purpose.name


def _invalid(message: str, name: object, key: str) -> ValidationError:
    return ValidationError(message, code="invalid_consent_purpose", details=[{"purpose": name, "field": key}])


def _optional_str(spec: Mapping[str, Any], key: str, name: object) -> str | None:
    value = spec.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _invalid(f"consent purpose {name!r}: {key} must be a string, got {value!r}", name, key)


def _purpose_from_spec(spec: Mapping[str, Any], known: Mapping[str, Purpose]) -> Purpose:
    if not isinstance(spec, Mapping):
        raise _invalid(f"a ConsentPurpose must be a mapping, got {type(spec).__name__}", None, "")
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _invalid(
            f"invalid consent purpose name {name!r}; expected lower-case letters, digits and '_', "
            "starting with a letter (e.g. 'marketing_email')",
            name,
            "name",
        )
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise _invalid(
            f"consent purpose {name!r}: unknown field {unknown[0]!r}; "
            f"expected one of {', '.join(map(repr, sorted(_SPEC_KEYS - {'kind'})))}",
            name,
            unknown[0],
        )
    base = known.get(name)
    legal_basis: LegalBasis = base.legal_basis if base is not None else "consent"
    if spec.get("legal_basis") is not None:
        legal_basis = parse_legal_basis(spec["legal_basis"])
    if name == NECESSARY and legal_basis == "consent":
        raise _invalid(
            "the 'necessary' purpose is always allowed and cannot have legal_basis 'consent'",
            name,
            "legal_basis",
        )
    description = _optional_str(spec, "description", name)
    channel = _optional_str(spec, "channel", name)
    expiry_ms = base.default_expiry_ms if base is not None else None
    if "default_expiry" in spec:
        raw = spec["default_expiry"]
        expiry_ms = None if raw is None else parse_duration(raw)
    return Purpose(
        name=name,
        legal_basis=legal_basis,
        description=description if description is not None else (base.description if base else ""),
        channel=channel if "channel" in spec else (base.channel if base else None),
        default_expiry_ms=expiry_ms,
    )
