"""How kinds check fields: errors collected with their field path and YAML line, and declared fields."""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final, TypeAlias

from rapport.types import Json, JsonObject

PathPart: TypeAlias = str | int
Path: TypeAlias = tuple[PathPart, ...]

NAME_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]{0,62}")
NAME_HELP: Final = "lower-case letters, digits and '_', starting with a letter, at most 63 characters"


def render_path(path: Path) -> str:
    """``("events", "Signup", "purposes", 0)`` → ``events.Signup.purposes[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def quoted(options: Iterable[str]) -> str:
    """``'a', 'b', 'c'``: options as an error message lists them."""
    return ", ".join(repr(option) for option in options)


def nearest(word: str, options: Iterable[str]) -> str | None:
    """The option closest to ``word`` (case-insensitive), for a 'did you mean' hint."""
    by_lower = {option.lower(): option for option in options}
    if word.lower() in by_lower:
        return by_lower[word.lower()]
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the nearest option, or nothing when none is near."""
    hint = nearest(word, options)
    return f" (did you mean {hint!r}?)" if hint is not None else ""


def show(value: Json) -> str:
    """A short description of a YAML value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


@dataclass(slots=True)
class FieldErrors:
    """The errors of one document; ``at`` gives a view one field deeper that shares the same list."""

    document: int = 0
    kind: str | None = None
    name: str | None = None
    lines: Mapping[Path, int] = field(default_factory=dict)
    path: Path = ()
    details: list[JsonObject] = field(default_factory=list)

    def at(self, *parts: PathPart) -> FieldErrors:
        """The same errors, for a field below this one."""
        return replace(self, path=self.path + parts)

    @property
    def label(self) -> str:
        """The dotted path of this field, as messages name it."""
        return render_path(self.path) or "document"

    def line_of(self, path: Path) -> int:
        """The YAML line of ``path``, or of its nearest enclosing field that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return 1

    def add(self, message: str, expected: str, *at: PathPart, line: int | None = None) -> None:
        """Record one error at this field, or at ``at`` below it; ``line`` overrides the field's line."""
        path = self.path + at
        self.details.append(
            {
                "document": self.document,
                "line": line if line is not None else self.line_of(path),
                "kind": self.kind,
                "name": self.name,
                "field": render_path(path),
                "message": message,
                "expected": expected,
            }
        )

    def reject(self, value: Json, expected: str) -> Json:
        """Report ``value`` as invalid here and return ``INVALID``."""
        self.add(f"invalid {self.label} {show(value)}; expected {expected}", expected)
        return INVALID


class _Invalid:
    def __repr__(self) -> str:
        return "INVALID"


INVALID: Final = _Invalid()
"""Returned by a checker after it reported an error; the field is then left out of the result."""


@dataclass(frozen=True, slots=True)
class Check:
    """A value checker: returns the normalized value, or ``INVALID`` after reporting why."""

    expected: str
    run: Callable[[Json, FieldErrors], Json]

    def __call__(self, value: Json, ctx: FieldErrors) -> Json:
        return self.run(value, ctx)


_NO_DEFAULT: Final = _Invalid()


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a kind: its checker, whether it must be present, and its default."""

    check: Check
    required: bool = False
    default: Json = _NO_DEFAULT


Fields: TypeAlias = Mapping[str, Field]


def required(check: Check) -> Field:
    """A field that must be present."""
    return Field(check, required=True)


def optional(check: Check, default: Json = _NO_DEFAULT) -> Field:
    """A field that may be absent; ``default``, when given, is filled in for an absent field."""
    return Field(check, default=default)


def check_fields(
    value: Mapping[str, Json], ctx: FieldErrors, fields: Fields, implicit: tuple[str, ...] = ()
) -> JsonObject:
    """Check a mapping against ``fields``: unknown names, missing ones, each value; fill in defaults.

    ``implicit`` names are allowed and copied through unchecked (``kind`` and ``name`` of a document).
    A ``null`` value counts as absent. The result lists ``implicit`` names first, then ``fields`` in
    their declared order.
    """
    allowed = (*implicit, *fields)
    expected = f"one of {quoted(allowed)}"
    for key in value:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed)
            ctx.add(f"unknown field {show(key)}{hint}; expected {expected}", expected, key)
    out: JsonObject = {key: value[key] for key in implicit if key in value}
    for key, spec in fields.items():
        raw = value.get(key)
        if raw is None:
            if spec.required:
                want = spec.check.expected
                ctx.add(f"missing required field {key!r}; expected {want}", want, key)
            elif spec.default is not _NO_DEFAULT:
                out[key] = copy.deepcopy(spec.default)
            continue
        checked = spec.check(raw, ctx.at(key))
        if checked is not INVALID:
            out[key] = checked
    return out


def check_document(doc: Mapping[str, Json], ctx: FieldErrors, fields: Fields) -> JsonObject:
    """``check_fields`` for a whole document, whose ``kind`` and ``name`` were checked by the parser."""
    return check_fields(doc, ctx, fields, implicit=("kind", "name"))
