"""Reusable value checkers for resource fields: text, names, enums, durations, lists, rules."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rapport.durations import parse_duration
from rapport.errors import ValidationError
from rapport.resources.fields import (
    INVALID,
    NAME_HELP,
    NAME_PATTERN,
    Check,
    FieldErrors,
    Fields,
    check_fields,
    did_you_mean,
    quoted,
    show,
)
from rapport.types import Json, JsonObject

if TYPE_CHECKING:
    from rapport.rules import Node


def text(expected: str = "a non-empty string") -> Check:
    """A string with at least one non-blank character, kept as written."""
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
    """One of ``options``; a near miss gets a 'did you mean' hint."""
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
    """A finite number above zero (a whole one with ``integer``); booleans are not numbers."""
    expected = "a positive whole number" if integer else "a positive number"

    def run(value: Json, ctx: FieldErrors) -> Json:
        kinds = (int,) if integer else (int, float)
        ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        return value if ok else ctx.reject(value, expected)

    return Check(expected, run)


def whole_number(minimum: int = 0) -> Check:
    """A whole number of at least ``minimum``; booleans are not numbers."""
    expected = f"a whole number of at least {minimum}"

    def run(value: Json, ctx: FieldErrors) -> Json:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
        return value if ok else ctx.reject(value, expected)

    return Check(expected, run)


def boolean() -> Check:
    """``true`` or ``false`` (``yes``/``no``/``on``/``off`` are strings in resource YAML)."""
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
    """A list whose items pass ``item``; with ``unique`` a repeated item is an error."""
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


def rule(expected: str = 'a rule, e.g. traits.plan == "pro"', event_filter: bool = False) -> Check:
    """Rule text, kept as written and parsed to report syntax errors at their line and column.

    With ``event_filter`` the rule tests one event's properties: it may read only ``event.<name>``
    paths and use no event functions or segments.
    """

    def run(value: Json, ctx: FieldErrors) -> Json:
        if not (isinstance(value, str) and value.strip()):
            return ctx.reject(value, expected)
        # Imported on use: only kinds with rule fields need the rule parser.
        from rapport.rules import parse

        try:
            node = parse(value)
        except ValidationError as exc:
            ctx.add(f"invalid rule in {ctx.label}: {exc.message}", expected)
            return INVALID
        if event_filter and not _is_event_filter(node, ctx, expected):
            return INVALID
        return value

    return Check(expected, run)


def _is_event_filter(node: Node, ctx: FieldErrors, expected: str) -> bool:
    """Whether ``node`` reads only event properties; reports each path, function or segment it uses."""
    from rapport.rules import event_functions, paths, segments

    problems: list[str] = []
    for path in sorted(paths(node), key=lambda path: (path.span.line, path.span.col)):
        if path.root != "event":
            where = f"line {path.span.line}, col {path.span.col}"
            problems.append(f"reads {'.'.join((path.root, *path.parts))!r} at {where}")
    for fn in event_functions(node):
        problems.append(f"uses {fn.fn}(...) at line {fn.span.line}, col {fn.span.col}")
    for segment in sorted(segments(node)):
        problems.append(f"uses in_segment({segment!r})")
    for problem in problems:
        ctx.add(f"{ctx.label} filters one event and may only read event.<property>; it {problem}", expected)
    return not problems
