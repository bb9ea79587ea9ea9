"""Trait values flattened for rules: one typed row per value, as the SQL engine reads them.

The in-memory rule engine reads a profile's traits as JSON; the SQL engine reads these rows. They
agree because each row says, for the value at one path, exactly what the evaluator's comparisons
look at (``rapport.rules.evaluate``): its kind, its number, its text, and the instant it names.
Encrypted personal values are ``sealed``: present, but equal to nothing a rule can write.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, TypeAlias

from rapport.privacy.pii import is_marker
from rapport.rules.dates import parse_iso
from rapport.types import Json

SEP = "\x1f"
"""Joins the trait name and nested object keys into a path."""

Kind: TypeAlias = Literal["number", "string", "bool", "object", "array", "sealed"]
ValueRow: TypeAlias = tuple[str, int, Kind, float | None, str | None, float | None]
"""(path, elem, kind, num, txt, instant); elem 0 is the value at path, n > 0 element n-1 of a list."""


def path_key(parts: tuple[str, ...] | list[str]) -> str:
    """The stored path of ``traits.<parts...>``."""
    return SEP.join(parts)


def scalar(value: Json) -> tuple[Kind, float | None, str | None, float | None] | None:
    """(kind, num, txt, instant) of one value; None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool", float(value), None, None
    if isinstance(value, int | float):
        number = float(value)
        return "number", number, None, number
    if isinstance(value, str):
        at = parse_iso(value)
        return "string", None, value, None if at is None else float(at)
    if isinstance(value, dict):
        return ("sealed" if is_marker(value) else "object"), None, None, None
    return "array", None, None, None


def flatten(name: str, value: Json) -> Iterator[ValueRow]:
    """The rows of trait ``name`` holding ``value``: the value, its nested object fields (at any
    depth) and the elements of its lists (one level: list elements are not paths)."""
    yield from _rows(name, value)


def _rows(path: str, value: Json) -> Iterator[ValueRow]:
    head = scalar(value)
    if head is None:
        return
    yield (path, 0, *head)
    if head[0] == "object":
        assert isinstance(value, dict)
        for key, item in value.items():
            yield from _rows(path + SEP + key, item)
    elif head[0] == "array":
        assert isinstance(value, list)
        for i, item in enumerate(value):
            element = scalar(item)
            if element is not None:
                yield (path, i + 1, *element)
