"""The PII print lint: which personal fields a Liquid template prints, and where each channel may print them.

A field is printed when an output (``{{ ... }}``, ``echo``) reads it, directly or through a variable assigned
from it (``assign``, a ``for`` loop variable); reading it in a condition (``{% if traits.email %}``) prints
nothing. Personal fields are the workspace's ``pii_fields``, read as ``traits.<field>`` or ``event.<field>``;
names compare without case and underscores (``firstName`` is ``first_name``).

Default policy, per channel (the workspace setting ``pii_print`` replaces it channel by channel):

- email: name, first_name, last_name, email
- web, app, inapp: name, first_name, last_name
- push, sms: first_name (a lock screen or an SMS is read by whoever holds the phone)
- offline: anything (a task for the team, not a message to the person)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from liquid import RenderContext
from liquid.ast import Node
from liquid.builtin.expressions import Path as LiquidPath
from liquid.builtin.output import OutputNode
from liquid.builtin.tags.echo_tag import EchoNode
from liquid.expression import Expression

from rapport.errors import ValidationError
from rapport.templates.render import Parts, check_source, compile_part
from rapport.types import Json, JsonObject

POLICY_CHANNELS: Final = ("email", "web", "app", "inapp", "push", "sms", "offline")
DEFAULT_POLICY: Final[Mapping[str, tuple[str, ...] | None]] = {
    "email": ("name", "first_name", "last_name", "email"),
    "web": ("name", "first_name", "last_name"),
    "app": ("name", "first_name", "last_name"),
    "inapp": ("name", "first_name", "last_name"),
    "push": ("first_name",),
    "sms": ("first_name",),
    "offline": None,
}
"""The PII fields each channel may print; ``None``: any."""
PERSONAL_ROOTS: Final = frozenset({"traits", "event"})


def normalized(name: str) -> str:
    """A field name as the lint compares it: ``First_Name`` and ``firstName`` are both ``firstname``."""
    return name.lower().replace("_", "")


def print_policy(value: Json) -> JsonObject:
    """The ``pii_print`` workspace setting, checked: channel → list of field names."""
    expected = f'an object of channel ({", ".join(POLICY_CHANNELS)}) to a list of field names, e.g. ' \
               '{"push": ["first_name"]}'
    if not isinstance(value, dict):
        raise ValidationError(f"'pii_print' must be {expected}", code="invalid_settings")
    out: JsonObject = {}
    for channel, fields in value.items():
        if channel not in POLICY_CHANNELS:
            raise ValidationError(f"'pii_print' names unknown channel {channel!r}; expected one of "
                                  f"{', '.join(POLICY_CHANNELS)}", code="invalid_settings")
        if not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields):
            raise ValidationError(f"'pii_print.{channel}' must be a list of field names", code="invalid_settings")
        out[channel] = list(fields)
    return out


def printable(channel: str, overrides: Mapping[str, Json]) -> frozenset[str] | None:
    """The normalized PII fields ``channel`` may print (``None``: any)."""
    given = overrides.get(channel)
    fields = [str(f) for f in given] if isinstance(given, list) else DEFAULT_POLICY.get(channel, ())
    return None if fields is None else frozenset(normalized(f) for f in fields)


@dataclass(frozen=True, slots=True)
class Printed:
    """A personal field a part prints: the path read, the field, and where (1-based line and column)."""

    part: str
    path: str
    field: str
    line: int
    col: int


def _paths(expression: Expression) -> Iterator[LiquidPath]:
    if isinstance(expression, LiquidPath):
        yield expression
    for child in expression.children():
        yield from _paths(child)


def _segments(path: LiquidPath) -> list[str]:
    return [str(s) if not isinstance(s, LiquidPath) else "[...]" for s in path.path]


def _line_col(source: str, index: int) -> tuple[int, int]:
    before = source[:max(index, 0)]
    return before.count("\n") + 1, max(index, 0) - (before.rfind("\n") + 1) + 1


def printed_fields(part: str, source: str, personal: frozenset[str]) -> list[Printed]:
    """The personal fields (normalized names in ``personal``) that ``source`` prints, in source order."""
    if check_source(source) is not None:
        return []
    template = compile_part(part, source)
    static = RenderContext(template)
    found: list[Printed] = []
    tainted: dict[str, tuple[str, str]] = {}

    def personal_read(expressions: Iterable[Expression]) -> Iterator[tuple[LiquidPath, str, str]]:
        for expression in expressions:
            for path in _paths(expression):
                segments = _segments(path)
                if segments[0] in PERSONAL_ROOTS and len(segments) > 1 and normalized(segments[1]) in personal:
                    yield path, ".".join(segments[:2]), segments[1]
                elif segments[0] in tainted:
                    origin, field = tainted[segments[0]]
                    yield path, origin, field

    def visit(node: Node) -> None:
        expressions = list(node.expressions())
        if isinstance(node, OutputNode | EchoNode):
            for path, origin, field in personal_read(expressions):
                line, col = _line_col(source, path.token.start_index)
                found.append(Printed(part, origin, field, line, col))
        else:
            names = [str(n) for n in (*node.template_scope(), *node.block_scope())]
            reads = list(personal_read(expressions))
            if names and reads:
                for name in names:
                    tainted[name] = reads[0][1], reads[0][2]
        for child in node.children(static, include_partials=False):
            visit(child)

    for node in template.nodes:
        visit(node)
    return found


def print_problems(parts: Parts, channel: str, pii_fields: Iterable[str],
                   overrides: Mapping[str, Json]) -> list[Printed]:
    """What ``parts`` print that ``channel`` may not print under the workspace's policy."""
    allowed = printable(channel, overrides)
    if allowed is None:
        return []
    personal = frozenset(normalized(f) for f in pii_fields) - allowed
    out: list[Printed] = []
    for name, value in parts.items():
        sources = [(name, value)] if isinstance(value, str) else [(f"{name}.{k}", v) for k, v in value.items()]
        for label, source in sources:
            out += printed_fields(label, source, personal)
    return out


def describe(problem: Printed, channel: str, overrides: Mapping[str, Json]) -> str:
    """The error message for one printed field."""
    allowed = overrides.get(channel) if isinstance(overrides.get(channel), list) else DEFAULT_POLICY.get(channel)
    may = ", ".join(repr(f) for f in allowed or ()) or "no personal field"
    return (f"{problem.part!r} prints the personal field {problem.field!r} ({problem.path}) at line {problem.line}, "
            f"col {problem.col} of the template; channel {channel!r} may print only {may} (workspace setting "
            "'pii_print' changes this)")
