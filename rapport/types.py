"""Shared type aliases used across every stage."""

from __future__ import annotations

from typing import Any, NewType, TypeAlias

WorkspaceId = NewType("WorkspaceId", str)
ProfileId = NewType("ProfileId", str)
Millis: TypeAlias = int
"""Milliseconds since the Unix epoch, UTC: the one time representation in storage and pipelines."""

Json: TypeAlias = Any
"""A JSON value as decoded by orjson (dict, list, str, int, float, bool or None)."""
JsonObject: TypeAlias = dict[str, Any]

SECOND: Millis = 1000
MINUTE: Millis = 60 * SECOND
HOUR: Millis = 60 * MINUTE
DAY: Millis = 24 * HOUR
WEEK: Millis = 7 * DAY
