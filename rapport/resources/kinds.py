"""The registry of resource kinds: each kind is a name and a validator of its documents.

A kind is one module that builds a ``KindSpec`` and calls ``register``; importing
``rapport.resources`` imports every built-in kind module (see ``rapport.resources.builtin``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from rapport.errors import ValidationError
from rapport.resources.fields import FieldErrors, Fields, check_document, did_you_mean, quoted
from rapport.types import JsonObject

Validator = Callable[[JsonObject, FieldErrors], JsonObject]
"""Checks one document (``kind`` and ``name`` already checked), reports every error to the
``FieldErrors`` and returns the canonical spec: defaults filled in, ``kind`` and ``name`` included."""

KIND_PATTERN: Final = re.compile(r"[A-Z][A-Za-z0-9]*")


@dataclass(frozen=True, slots=True)
class KindSpec:
    """A resource kind: its name, its validator and the order of its fields when printed."""

    name: str
    validate: Validator
    fields: tuple[str, ...] = ()

    @classmethod
    def from_fields(cls, name: str, fields: Fields) -> KindSpec:
        """A kind whose documents are exactly ``fields``, with no rule spanning several fields."""

        def validate(doc: JsonObject, ctx: FieldErrors) -> JsonObject:
            return check_document(doc, ctx, fields)

        return cls(name, validate, tuple(fields))


_KINDS: dict[str, KindSpec] = {}


def register(spec: KindSpec) -> KindSpec:
    """Make ``spec`` available to the parser; a second, different kind of the same name is a bug."""
    if not KIND_PATTERN.fullmatch(spec.name):
        raise ValueError(f"invalid kind name {spec.name!r}; expected CamelCase such as 'ComputedTrait'")
    existing = _KINDS.get(spec.name)
    if existing is not None and existing is not spec:
        raise ValueError(f"kind {spec.name!r} is already registered")
    _KINDS[spec.name] = spec
    return spec


def known_kinds() -> tuple[str, ...]:
    """The registered kind names, sorted."""
    return tuple(sorted(_KINDS))


def get_kind(name: str) -> KindSpec:
    """The registered kind ``name``; an unknown name is a ``ValidationError`` naming the valid kinds."""
    spec = _KINDS.get(name)
    if spec is not None:
        return spec
    expected = f"one of {quoted(known_kinds())}"
    message = f"unknown kind {name!r}{did_you_mean(name, known_kinds())}; expected {expected}"
    raise ValidationError(
        message,
        code="unknown_kind",
        details=[{"field": "kind", "message": message, "expected": expected}],
    )
