"""Resource values: one validated document, and one planned change to the stored set."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import orjson

from rapport.errors import ValidationError
from rapport.types import JsonObject

ChangeAction = Literal["create", "update", "unchanged", "delete"]


def canonical_json(spec: JsonObject) -> bytes:
    """The canonical bytes of a spec: JSON with sorted keys, the input of ``Resource.digest``."""
    return orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource: ``spec`` is the canonical document (``kind`` and ``name`` included, defaults
    filled in, durations kept as written). Treat ``spec`` as read-only."""

    kind: str
    name: str
    spec: JsonObject

    def __post_init__(self) -> None:
        if self.spec.get("kind") != self.kind or self.spec.get("name") != self.name:
            raise ValidationError(
                f"resource {self.kind}/{self.name} has a spec for "
                f"{self.spec.get('kind')!r}/{self.spec.get('name')!r}; expected the same kind and name",
                code="invalid_resource",
            )

    @classmethod
    def from_spec(cls, spec: JsonObject) -> Resource:
        """A resource from a stored canonical spec."""
        return cls(str(spec.get("kind")), str(spec.get("name")), spec)

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    @property
    def digest(self) -> str:
        """SHA-256 hex of the canonical JSON: equal specs have equal digests, whatever their key order."""
        return hashlib.sha256(canonical_json(self.spec)).hexdigest()

    def __hash__(self) -> int:
        return hash((self.kind, self.name, self.digest))


@dataclass(frozen=True, slots=True)
class Change:
    """What applying a desired resource does to the stored one.

    ``before``/``after`` are the current and desired specs (``None`` when absent); ``diff`` is a
    unified diff of their YAML forms, empty when unchanged.
    """

    action: ChangeAction
    kind: str
    name: str
    before: JsonObject | None
    after: JsonObject | None
    diff: tuple[str, ...]
