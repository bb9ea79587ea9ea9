"""Checks a segment rule against its workspace: names it uses, paths it may read, comparisons SQL can answer.

Errors point at the offending place with ``line:col`` and a caret, as syntax errors do, and suggest
the nearest valid names.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

from rapport.errors import ValidationError
from rapport.rules import (
    And,
    Compare,
    Contains,
    DateConst,
    Exists,
    In,
    InSegment,
    IsNull,
    Node,
    Not,
    Operand,
    Or,
    Path,
    RuleSyntaxError,
    Span,
    StartsWith,
    parse,
    to_text,
)
from rapport.rules.lexer import tokenize
from rapport.workspaces.runtime import WorkspaceRuntime

SEGMENT_ROOTS = ("computed", "consent", "traits")
"""The path roots a segment rule may read: ``context.`` and ``event.`` exist only in decisions and journeys."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a rule cannot be a segment rule: at ``span`` of its text, on its token number
    ``token`` (``computed.ordrs``: token 2 is the name; ``in_segment("x")``: token 2 is the string)."""

    message: str
    span: Span
    suggestions: tuple[str, ...] = ()
    token: int = 0


def _options(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _unknown(what: str, name: str, valid: Collection[str], span: Span, token: int = 2) -> Problem:
    names = sorted(valid)
    close = tuple(difflib.get_close_matches(name, names, n=3, cutoff=0.6))
    hint = ""
    if close:
        alternatives = " or ".join([", ".join(repr(c) for c in close[:-1]), repr(close[-1])] if len(close) > 1
                                   else [repr(close[0])])
        hint = f" (did you mean {alternatives}?)"
    expected = f"expected one of {_options(names)}" if names else f"no {what}s are defined"
    return Problem(f"unknown {what} {name!r}{hint}; {expected}", span, close, token)


def _operands(node: Node) -> Iterator[tuple[Node, Operand]]:
    """Each operand with the test it belongs to, in source order (not inside ``where=`` rules)."""
    if isinstance(node, And | Or):
        for item in node.items:
            yield from _operands(item)
    elif isinstance(node, Not):
        yield from _operands(node.item)
    elif isinstance(node, Compare | Contains | StartsWith):
        yield node, node.left
        yield node, node.right
    elif isinstance(node, In):
        yield node, node.left
        for value in node.values:
            yield node, value
    elif isinstance(node, Exists | IsNull):
        yield node, node.path


def _tests(node: Node) -> Iterator[Node]:
    if isinstance(node, And | Or):
        for item in node.items:
            yield from _tests(item)
    elif isinstance(node, Not):
        yield from _tests(node.item)
    else:
        yield node


def _foreign(path: Path) -> Problem:
    what = ("request context, which exists only when a decision is made" if path.root == "context"
            else "a property of the event that triggers a journey step")
    hint = (' or an event function such as count("Order Completed", where=event.total > 10)'
            if path.root == "event" else "")
    return Problem(f"a segment rule cannot read {to_text(path)} ({what}); expected a path starting with one of "
                   f"{_options(SEGMENT_ROOTS)}{hint}", path.span)


def foreign_paths(rule: Node) -> list[Problem]:
    """The ``context.`` and ``event.`` paths of ``rule`` (outside ``where=``): no segment rule reads them."""
    return [_foreign(op) for _, op in _operands(rule) if isinstance(op, Path) and op.root not in SEGMENT_ROOTS]


def ensure_segment_rule(rule: Node) -> None:
    """Raise ``ValidationError`` (``invalid_rule``) when ``rule`` reads ``context.`` or ``event.`` paths."""
    found = foreign_paths(rule)
    if found:
        span = found[0].span
        where = f"line {span.line}, col {span.col}: " if span.line else ""
        raise ValidationError(where + found[0].message, code="invalid_rule", details=[{"problem": found[0].message}])


def _json_valued(path: Path, rt: WorkspaceRuntime) -> bool:
    """Whether ``path`` is a computed first/last value of an event property (JSON of any kind)."""
    if path.root != "computed" or len(path.parts) != 1:
        return False
    defn = rt.traits.get(path.parts[0])
    return defn is not None and defn.aggregate in ("first", "last") and defn.series.prop is not None


def problems(rule: Node, rt: WorkspaceRuntime, segments: Collection[str]) -> list[Problem]:
    """Everything wrong with ``rule`` as a segment rule of the workspace, in source order."""
    found: list[Problem] = []
    for test, op in _operands(rule):
        if not isinstance(op, Path):
            continue
        if op.root not in SEGMENT_ROOTS:
            found.append(_foreign(op))
        elif op.root == "computed":
            name = op.parts[0]
            if name not in rt.traits:
                found.append(_unknown("computed trait", name, rt.traits, op.span))
            elif len(op.parts) > 1:
                found.append(Problem(f"computed.{name} is one value and has no field {op.parts[1]!r}; "
                                     f"write computed.{name}", op.span, token=4))
            elif _json_valued(op, rt) and _with_date(test, op):
                defn = rt.traits[name]
                found.append(Problem(
                    f"computed.{name} is the {defn.aggregate} value of the event property {defn.series.prop!r}, "
                    "which may be of any kind, so it cannot be compared with a date (whether one of its strings "
                    f"is a date cannot be answered in SQL); compare it with a string or number, or define "
                    f"{name} without a property to get the time of the {defn.aggregate} event", op.span))
        elif op.root == "consent":
            name = op.parts[0]
            if name not in rt.catalog:
                found.append(_unknown("consent purpose", name, rt.catalog.names(), op.span))
            elif len(op.parts) > 1:
                found.append(Problem(f"consent.{name} is true or false and has no field {op.parts[1]!r}; "
                                     f"write consent.{name}", op.span, token=4))
    for test in _tests(rule):
        if isinstance(test, InSegment) and test.name not in segments:
            found.append(_unknown("segment", test.name, segments, test.span))
    return sorted(found, key=lambda p: p.span.start)


def _with_date(test: Node, operand: Path) -> bool:
    """Whether ``test`` compares ``operand`` with a date literal (as a value, or as a list's member)."""
    if isinstance(test, Compare):
        return isinstance(test.left, DateConst) or isinstance(test.right, DateConst)
    if isinstance(test, Contains):
        return test.left is operand and isinstance(test.right, DateConst)
    return isinstance(test, In) and test.left is operand and any(isinstance(v, DateConst) for v in test.values)


def located(problem: Problem, text: str) -> ValidationError:
    """``problem`` as an ``invalid_rule`` error showing line:col, the source line and a caret."""
    tokens = [t for t in tokenize(text) if problem.span.start <= t.start < problem.span.end]
    offset = tokens[problem.token].start if problem.token < len(tokens) else problem.span.start
    shown = RuleSyntaxError(problem.message, text, offset)
    return ValidationError(shown.message, code="invalid_rule", details=[
        {"line": shown.line, "col": shown.col, "problem": problem.message, "suggestions": list(problem.suggestions)}])


def check_rule(rule_text: str, rt: WorkspaceRuntime, segments: Collection[str]) -> Node:
    """The parsed segment rule; raises ``RuleSyntaxError`` for bad syntax, or ``ValidationError``
    (``invalid_rule``) for unknown computed traits, consent purposes or segments (``segments`` are the
    names that exist), for ``context.``/``event.`` paths and for comparisons SQL cannot answer."""
    rule = parse(rule_text)
    found = problems(rule, rt, segments)
    if found:
        raise located(found[0], rule_text)
    return rule


