"""Identity resolution: normalized identifiers, the merge decision and the reference identity graph."""

from __future__ import annotations

from rapport.identity.graph import IdentityGraph
from rapport.identity.model import (
    BUILTIN_TYPES,
    DEFAULT_RULES,
    Conflict,
    ConflictRecord,
    Identifier,
    IdentityRules,
    Merge,
    MergeRecord,
    ProfileRef,
    Resolution,
)
from rapport.identity.normalize import MAX_LENGTH, alias_previous, identifiers_from_event, normalize
from rapport.identity.resolve import resolve

__all__ = [
    "BUILTIN_TYPES",
    "DEFAULT_RULES",
    "MAX_LENGTH",
    "Conflict",
    "ConflictRecord",
    "Identifier",
    "IdentityGraph",
    "IdentityRules",
    "Merge",
    "MergeRecord",
    "ProfileRef",
    "Resolution",
    "alias_previous",
    "identifiers_from_event",
    "normalize",
    "resolve",
]
