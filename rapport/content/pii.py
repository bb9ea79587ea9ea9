"""The PII print lint: which profile values a Liquid template prints, and where each channel may print them.

A value is printed when an output (``{{ ... }}``, ``echo``, ``cycle``) shows it, directly, through a filter
(``| upcase``, ``| map: 'email'``, ``| join``) or through a variable holding it; reading it in a condition
(``{% if traits.email %}``) prints nothing. Variables are tracked conservatively, without regard to order or
branches: a variable assigned (``assign``), captured (``capture``) or looped (``for``, ``tablerow``) from a
profile value anywhere in the template holds that value everywhere. Printing a whole root (``{{ traits }}``),
looping over it, or indexing it by anything but a literal name (``traits[k]``, ``traits.first``) may print
any of its fields, so it prints every one.

Personal fields are the workspace's ``pii_fields``, read as ``traits.<field>`` or ``event.<field>``, or deeper
inside a non-personal field (``traits.contact.email``; ``name`` only at the top, where it is a person's name);
names compare without case and underscores (``firstName`` is ``first_name``).

Default policy, per channel (the workspace setting ``pii_print`` replaces it channel by channel):

- email: name, first_name, last_name, email
- web, app, inapp: name, first_name, last_name
- push, sms: first_name (a lock screen or an SMS is read by whoever holds the phone)
- offline: anything (a task for the team, not a message to the person)

The public channels (web, app, inapp) also print no computed trait (``computed.<name>``), segment membership
(``segments``) or consent state (``consent.<purpose>``) unless their ``pii_print`` list names it
(``computed.<name>``, ``computed.*``, ``consent.<purpose>``, ``consent.*``, ``segments``): whoever holds the
write key, which ships inside pages and apps, can ask for any ``user_id``'s decisions and inbox.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Final, Literal

import orjson
from liquid import RenderContext
from liquid.ast import BlockNode, ConditionalBlockNode, Node
from liquid.builtin.content import ContentNode
from liquid.builtin.expressions import FilteredExpression, LoopExpression, StringLiteral
from liquid.builtin.expressions import Path as LiquidPath
from liquid.builtin.tags.assign_tag import AssignNode
from liquid.builtin.tags.capture_tag import CaptureNode
from liquid.builtin.tags.case_tag import CaseNode, MultiExpressionBlockNode
from liquid.builtin.tags.comment_tag import CommentNode
from liquid.builtin.tags.decrement_tag import DecrementNode
from liquid.builtin.tags.doc_tag import DocNode
from liquid.builtin.tags.for_tag import BreakNode, ContinueNode, ForNode
from liquid.builtin.tags.if_tag import IfNode
from liquid.builtin.tags.ifchanged_tag import IfChangedNode
from liquid.builtin.tags.increment_tag import IncrementNode
from liquid.builtin.tags.liquid_tag import LiquidNode
from liquid.builtin.tags.tablerow_tag import TablerowNode
from liquid.builtin.tags.unless_tag import UnlessNode
from liquid.expression import Expression

from rapport.errors import ValidationError
from rapport.privacy.pii import TRAIT_ONLY_FIELDS
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
PUBLIC_CHANNELS: Final = frozenset({"web", "app", "inapp"})
"""Channels whose content the public write key can fetch for any ``user_id`` (decisions, the in-app inbox)."""
PERSONAL_ROOTS: Final = frozenset({"traits", "event"})
PROFILE_ROOTS: Final = frozenset({"computed", "consent", "segments"})
"""Roots a public channel prints only where its ``pii_print`` list names them."""
ROOTS: Final = PERSONAL_ROOTS | PROFILE_ROOTS
_PROFILE_ENTRY_ROOTS: Final = ("computed", "consent")
_SELECTING_FILTERS: Final = frozenset({"map", "sum"})
"""Filters whose first argument names the field they take out of each item."""
_ITEM_FILTERS: Final = frozenset({"first", "last"})
_ITEM_KEYS: Final = frozenset({"first", "last"})
"""Path segments that select an item, not a field: ``traits.first`` is the first (name, value) pair."""
_NOT_PRINTING: Final = (IfNode, UnlessNode, CaseNode, MultiExpressionBlockNode, ConditionalBlockNode, BlockNode,
                        ContentNode, CommentNode, DocNode, LiquidNode, IfChangedNode, BreakNode, ContinueNode,
                        IncrementNode, DecrementNode)
"""Nodes whose expressions are conditions or names, never output; any other node's expressions are printed."""


def normalized(name: str) -> str:
    """A field name as the lint compares it: ``First_Name`` and ``firstName`` are both ``firstname``."""
    return name.lower().replace("_", "")


def _entry_error(channel: str, entry: str) -> str | None:
    if entry == "segments" or "." not in entry:
        return None
    root, _, name = entry.partition(".")
    if root in _PROFILE_ENTRY_ROOTS and name and "." not in name:
        return None
    if root in PERSONAL_ROOTS and name:
        return f"'pii_print.{channel}' lists {entry!r}; name a personal field without its root, e.g. {name!r}"
    return (f"'pii_print.{channel}' lists {entry!r}; expected a personal field name, 'computed.<name>', "
            "'computed.*', 'consent.<purpose>', 'consent.*' or 'segments'")


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
        for entry in fields:
            problem = _entry_error(channel, str(entry))
            if problem is not None:
                raise ValidationError(problem, code="invalid_settings")
        out[channel] = list(fields)
    return out


def _listed(channel: str, overrides: Mapping[str, Json]) -> tuple[str, ...] | None:
    """What ``channel`` may print: the workspace's list for it, else the default (``None``: anything)."""
    given = overrides.get(channel)
    return tuple(str(f) for f in given) if isinstance(given, list) else DEFAULT_POLICY.get(channel, ())


@dataclass(frozen=True, slots=True)
class Printed:
    """A profile value a part prints that its channel may not print: the path it comes from (``traits.email``;
    the root when any of its fields may be printed), the field (``email``, ``computed.ltv``, ``segments``;
    ``traits.*`` for any field of a root), where (1-based line and column), and for a whole root the
    refused fields it holds."""

    part: str
    path: str
    field: str
    line: int
    col: int
    includes: tuple[str, ...] = ()


_Kind = Literal["root", "inner", "field", "any"]


@dataclass(frozen=True, slots=True)
class _Reach:
    """What a value may hold of a root: the whole root, a non-personal field's value (``inner``), one named
    field's value, or any field's value."""

    root: str
    kind: _Kind
    field: str = ""


_TRAIT_ONLY: Final = frozenset(normalized(f) for f in TRAIT_ONLY_FIELDS)


def _start(root: str) -> _Reach:
    return _Reach(root, "field", "segments") if root == "segments" else _Reach(root, "root")


def _key(reach: _Reach, key: str, personal: frozenset[str]) -> _Reach:
    """``reach`` indexed by the literal name ``key``."""
    if reach.kind in ("field", "any"):
        return reach
    if reach.kind == "root" and key in _ITEM_KEYS:
        return replace(reach, kind="any")
    if reach.root not in PERSONAL_ROOTS:
        return _Reach(reach.root, "field", key)
    name = normalized(key)
    top = reach.kind == "root"
    if name in personal and (top or name not in _TRAIT_ONLY):
        return _Reach(reach.root, "field", key)
    return _Reach(reach.root, "inner")


def _unknown_key(reach: _Reach) -> _Reach:
    """``reach`` indexed by a name the template computes: any field."""
    return replace(reach, kind="any") if reach.kind in ("root", "inner") else reach


def _item(reach: _Reach) -> _Reach:
    """An item of ``reach`` (a loop variable, ``[0]``, ``.first``): of a root, one of its (name, value) pairs."""
    return replace(reach, kind="any") if reach.kind == "root" else reach


Located = tuple[_Reach, int, str]
"""A reach, the source index of the path that carries it, and the path as written."""


class _Analysis:
    """One template's reaches: what each variable may hold and what each output prints (see the module
    docstring). Variables only gain reaches, so walking the template until none changes reaches a fixed point."""

    def __init__(self, personal: frozenset[str], held: dict[str, set[_Reach]]) -> None:
        self.personal = personal
        self.held = held
        self.printed: list[Located] = []
        self.changed = False

    def hold(self, name: str, reaches: Iterable[_Reach]) -> None:
        held = self.held.setdefault(name, set())
        before = len(held)
        held.update(reaches)
        self.changed |= len(held) != before

    def path(self, path: LiquidPath) -> list[_Reach]:
        head, *rest = path.path
        if isinstance(head, str):
            reaches = {*self.held.get(head, ()), *([_start(head)] if head in ROOTS else [])}
        else:
            reaches = {_Reach(root, "any") for root in ROOTS}
        for segment in rest:
            if isinstance(segment, str):
                reaches = {_key(r, segment, self.personal) for r in reaches}
            elif isinstance(segment, int):
                reaches = {_item(r) for r in reaches}
            else:
                reaches = {_unknown_key(r) for r in reaches}
        return sorted(reaches, key=_order)

    def value(self, expression: Expression) -> list[Located]:
        """What ``expression``'s value may hold, each reach located at the path it comes from."""
        if isinstance(expression, LiquidPath):
            return [(r, expression.token.start_index, str(expression)) for r in self.path(expression)]
        if isinstance(expression, FilteredExpression):
            out = self.value(expression.left)
            for filter_ in expression.filters or ():
                out = [(self.filtered(r, filter_.name, filter_.args[0].value if filter_.args else None), i, text)
                       for r, i, text in out]
                for argument in filter_.args:
                    out += self.value(argument.value)
            return out
        if isinstance(expression, StringLiteral):
            return []
        return [found for child in expression.children() for found in self.value(child)]

    def filtered(self, reach: _Reach, name: str, first: Expression | None) -> _Reach:
        if name in _ITEM_FILTERS:
            return _item(reach)
        if name in _SELECTING_FILTERS and first is not None:
            # A sequence filter takes a mapping as a list of one item: ``traits | map: 'email'`` is the email.
            return _key(reach, first.value, self.personal) if isinstance(first, StringLiteral) else _unknown_key(reach)
        return reach

    def walk(self, node: Node, static: RenderContext, into: str | None) -> None:
        """Visit ``node``: outputs are printed, or held by ``into`` inside a capture."""
        if isinstance(node, AssignNode):
            self.hold(node.name, (r for r, _, _ in self.value(node.expression)))
        elif isinstance(node, CaptureNode):
            into = node.name
        elif isinstance(node, ForNode | TablerowNode):
            loop = node.expression
            if isinstance(loop, LoopExpression):
                self.hold(loop.identifier, (_item(r) for r, _, _ in self.value(loop.iterable)))
        elif not isinstance(node, _NOT_PRINTING):
            for expression in node.expressions():
                found = self.value(expression)
                if into is None:
                    self.printed += found
                else:
                    self.hold(into, (r for r, _, _ in found))
        for child in node.children(static, include_partials=False):
            self.walk(child, static, into)


def _order(reach: _Reach) -> tuple[str, str, str]:
    return reach.root, reach.kind, reach.field


@lru_cache(maxsize=1024)
def _prints(source: str, personal: frozenset[str]) -> tuple[tuple[_Reach, int, int, str], ...]:
    """Every reach ``source`` prints, with the 1-based line and column of the path, in source order."""
    template = compile_part("lint", source)
    static = RenderContext(template)
    held: dict[str, set[_Reach]] = {}
    while True:
        analysis = _Analysis(personal, held)
        for node in template.nodes:
            analysis.walk(node, static, None)
        if not analysis.changed:
            break
    seen: dict[tuple[_Reach, int], str] = {}
    for reach, index, text in analysis.printed:
        seen.setdefault((reach, index), text)
    out = []
    for (reach, index), text in sorted(seen.items(), key=lambda item: (item[0][1], _order(item[0][0]))):
        line, col = _line_col(source, index)
        out.append((reach, line, col, text))
    return tuple(out)


def _line_col(source: str, index: int) -> tuple[int, int]:
    before = source[:max(index, 0)]
    return before.count("\n") + 1, max(index, 0) - (before.rfind("\n") + 1) + 1


@dataclass(frozen=True, slots=True)
class _Policy:
    """What a channel may not print: the workspace's personal fields (``pii_fields``, as written), the refused
    ones (normalized), and on a public channel the profile entries its list names."""

    pii_fields: tuple[str, ...]
    refused: frozenset[str]
    public: bool
    listed: frozenset[str]

    def refusal(self, reach: _Reach, path: str, part: str, line: int, col: int) -> Printed | None:
        if reach.root in PERSONAL_ROOTS:
            if reach.kind == "field" and normalized(reach.field) in self.refused:
                return Printed(part, f"{reach.root}.{reach.field}", reach.field, line, col)
            if reach.kind in ("root", "any"):
                names = tuple(dict.fromkeys(f for f in self.pii_fields if normalized(f) in self.refused))
                if names:
                    return Printed(part, path, f"{reach.root}.*", line, col, names)
            return None
        if not self.public or reach.kind == "inner":
            return None
        if reach.root == "segments":
            field = "segments"
        else:
            field = f"{reach.root}.{reach.field if reach.kind == 'field' else '*'}"
        if field in self.listed or f"{reach.root}.*" in self.listed:
            return None
        return Printed(part, field if reach.kind == "field" else path, field, line, col)


def printed_fields(part: str, source: str, personal: frozenset[str], *,
                   pii_fields: Iterable[str] = (), public: bool = False,
                   listed: Iterable[str] = ()) -> list[Printed]:
    """What ``source`` prints that its channel may not: personal fields whose normalized names are in
    ``personal`` (``pii_fields`` are the workspace's, as written, named when a whole root is printed), and
    on a ``public`` channel the computed traits, consent and segments not ``listed``; in source order."""
    if check_source(source) is not None:
        return []
    fields = tuple(pii_fields) or tuple(sorted(personal))
    every = frozenset(normalized(f) for f in fields) | personal
    policy = _Policy(fields, personal, public, frozenset(listed))
    out: list[Printed] = []
    for reach, line, col, text in _prints(source, every):
        problem = policy.refusal(reach, text, part, line, col)
        if problem is not None:
            out.append(problem)
    return out


def print_problems(parts: Parts, channel: str, pii_fields: Iterable[str],
                   overrides: Mapping[str, Json]) -> list[Printed]:
    """What ``parts`` print that ``channel`` may not print under the workspace's policy."""
    listed = _listed(channel, overrides)
    if listed is None:
        return []
    fields = tuple(pii_fields)
    allowed = frozenset(normalized(f) for f in listed if "." not in f)
    personal = frozenset(normalized(f) for f in fields) - allowed
    out: list[Printed] = []
    for name, value in parts.items():
        sources = [(name, value)] if isinstance(value, str) else [(f"{name}.{k}", v) for k, v in value.items()]
        for label, source in sources:
            out += printed_fields(label, source, personal, pii_fields=fields, public=channel in PUBLIC_CHANNELS,
                                  listed=listed)
    return out


def describe(problem: Printed, channel: str, overrides: Mapping[str, Json]) -> str:
    """The error message for one printed field."""
    listed = _listed(channel, overrides) or ()
    where = f"at line {problem.line}, col {problem.col} of the template"
    if problem.field.split(".")[0] in PROFILE_ROOTS:
        example = orjson.dumps({channel: [*listed, problem.field]}).decode()
        what = problem.field if problem.path == problem.field else f"{problem.path} (any of {problem.field})"
        return (f"{problem.part!r} prints {what} {where}; channel {channel!r} is public (the write key can ask "
                f"for any user id's content), so it prints computed traits, consent and segments only where the "
                f"workspace setting 'pii_print' lists them for it, e.g. {example}")
    may = ", ".join(repr(f) for f in listed if "." not in f) or "no personal field"
    if problem.includes:
        held = ", ".join(repr(f) for f in problem.includes)
        return (f"{problem.part!r} prints {problem.path}, which may hold any field of {problem.field[:-2]}, "
                f"{where}: the personal fields {held} included; channel {channel!r} may print only {may} "
                "(workspace setting 'pii_print' changes this)")
    return (f"{problem.part!r} prints the personal field {problem.field!r} ({problem.path}) {where}; "
            f"channel {channel!r} may print only {may} (workspace setting 'pii_print' changes this)")
