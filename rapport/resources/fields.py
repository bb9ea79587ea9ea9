"""Field checkers for resource kinds: each problem is collected with its field path and YAML line."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Final, TypeAlias

from rapport.durations import parse_duration
from rapport.errors import ValidationError
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
    return ", ".join(repr(option) for option in options)


def nearest(word: str, options: Iterable[str]) -> str | None:
    """The option closest to ``word`` (case-insensitive), for a 'did you mean' hint."""
    by_lower = {option.lower(): option for option in options}
    if word.lower() in by_lower:
        return by_lower[word.lower()]
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


def did_you_mean(word: str, options: Iterable[str]) -> str:
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
        return replace(self, path=self.path + parts)

    @property
    def label(self) -> str:
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
    return Field(check, required=True)


def optional(check: Check, default: Json = _NO_DEFAULT) -> Field:
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


def text(expected: str = "a non-empty string") -> Check:
    def run(value: Json, ctx: FieldErrors) -> Json:
        return value if isinstance(value, str) and value.strip() else ctx.reject(value, expected)

    return Check(expected, run)


def reference(what: str = "a name") -> Check:
    """The name of another resource, e.g. a consent purpose."""
    expected = f"{what} ({NAME_HELP})"

    def run(value: Json, ctx: FieldErrors) -> Json:
        ok = isinstance(value, str) and NAME_PATTERN.fullmatch(value)
        return value if ok else ctx.reject(value, expected)

    return Check(expected, run)


def one_of(*options: str) -> Check:
    expected = f"one of {quoted(options)}"

    def run(value: Json, ctx: FieldErrors) -> Json:
        if isinstance(value, str) and value in options:
            return value
        if not isinstance(value, str):
            return ctx.reject(value, expected)
        ctx.add(f"unknown {ctx.label} {value!r}{did_you_mean(value, options)}; expected {expected}", expected)
        return INVALID

    return Check(expected, run)


def duration() -> Check:
    """A duration kept as written (``90d``), checked with ``parse_duration``."""
    expected = "a duration such as '30d': a whole number and one of 's', 'm' (minutes), 'h', 'd', 'w'"

    def run(value: Json, ctx: FieldErrors) -> Json:
        try:
            parse_duration(value)
        except ValidationError:
            return ctx.reject(value, expected)
        return value

    return Check(expected, run)


def positive_number(integer: bool = False) -> Check:
    expected = "a positive whole number" if integer else "a positive number"

    def run(value: Json, ctx: FieldErrors) -> Json:
        kinds = (int,) if integer else (int, float)
        ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        return value if ok else ctx.reject(value, expected)

    return Check(expected, run)


def boolean() -> Check:
    expected = "true or false"

    def run(value: Json, ctx: FieldErrors) -> Json:
        return value if isinstance(value, bool) else ctx.reject(value, expected)

    return Check(expected, run)


def mapping(values: Check, keys: Check | None = None) -> Check:
    """A mapping whose keys pass ``keys`` (default: non-empty strings) and whose values pass ``values``."""
    key_check = keys or text()
    expected = f"a mapping of {key_check.expected} to {values.expected}"

    def run(value: Json, ctx: FieldErrors) -> Json:
        if not isinstance(value, dict):
            return ctx.reject(value, expected)
        out: JsonObject = {}
        for key, item in value.items():
            if key_check(key, ctx.at(key)) is INVALID:
                continue
            checked = values(item, ctx.at(key))
            if checked is not INVALID:
                out[key] = checked
        return out

    return Check(expected, run)


def list_of(item: Check, unique: bool = False, expected: str = "") -> Check:
    expected = (expected or f"a list of {item.expected}") + (", each at most once" if unique else "")

    def run(value: Json, ctx: FieldErrors) -> Json:
        if not isinstance(value, list):
            return ctx.reject(value, expected)
        out: list[Json] = []
        for index, element in enumerate(value):
            checked = item(element, ctx.at(index))
            if checked is INVALID:
                continue
            if unique and checked in out:
                ctx.at(index).add(f"duplicate {show(checked)} in {ctx.label}; expected {expected}", expected)
                continue
            out.append(checked)
        return out

    return Check(expected, run)


def nested(fields: Fields) -> Check:
    """A mapping with its own fields, e.g. one event entry of a tracking plan."""
    expected = f"a mapping with fields {quoted(fields)}"

    def run(value: Json, ctx: FieldErrors) -> Json:
        return check_fields(value, ctx, fields) if isinstance(value, dict) else ctx.reject(value, expected)

    return Check(expected, run)


def rule(expected: str = "a rule, e.g. traits.plan == \"pro\"", roots: tuple[str, ...] = ()) -> Check:
    """Rule text, kept as written and parsed to report syntax errors at their line and column.

    ``roots`` limits which paths the rule may read (``("event",)`` for a filter on event properties).
    """

    def run(value: Json, ctx: FieldErrors) -> Json:
        if not (isinstance(value, str) and value.strip()):
            return ctx.reject(value, expected)
        # Imported here so that resources load on their own; only rule fields need the parser.
        rules = importlib.import_module("rapport.rules")
        try:
            node = rules.parse(value)
        except ValidationError as exc:
            ctx.add(f"invalid rule in {ctx.label}: {exc.message}", expected)
            return INVALID
        for root, parts, where in _paths(node):
            if roots and root not in roots:
                read = ".".join((root, *parts))
                allowed = " or ".join(f"{r}.<name>" for r in roots)
                ctx.add(f"{ctx.label} may only read {allowed}; got {read!r}{where}", expected)
                return INVALID
        return value

    return Check(expected, run)


def _paths(node: object) -> Iterator[tuple[str, tuple[str, ...], str]]:
    """Every field read in a rule tree: ``(root, parts, " at line L, col C")``."""
    if isinstance(node, tuple | list):
        for item in node:
            yield from _paths(item)
        return
    if not dataclasses.is_dataclass(node) or isinstance(node, type):
        return
    root, parts = getattr(node, "root", None), getattr(node, "parts", None)
    if isinstance(root, str) and isinstance(parts, tuple):
        span = getattr(node, "span", None)
        line, col = getattr(span, "line", 0), getattr(span, "col", 0)
        yield root, parts, (f" at line {line}, col {col}" if line else "")
        return
    for item in dataclasses.fields(node):
        yield from _paths(getattr(node, item.name))
