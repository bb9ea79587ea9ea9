"""Which way new events can move a rule: the part of live evaluation that can be skipped exactly.

Adding events to a series can only raise its ``count`` (and a computed ``count`` or ``distinct``):
at every instant the value with the new events is at least the value without them. So
``count("Order Completed", within=30d) >= 1`` can only become true when events arrive (it is
*rising* in that series) and ``count("Order Completed", within=60d) == 0`` can only become false
(*falling*). A member of a segment whose rule is rising in every series a batch touched stays a
member, and a non-member of a falling rule stays out, as long as nothing else the rule reads moved:
no trait or consent it reads changed, and no time-based flip of the profile is due yet (the stored
timer is the earliest instant at which any of its segments can flip with time alone). Live
evaluation uses this to skip those (profile, segment) pairs; the result is the same as evaluating
them, which the reconciliation with the batch engine checks.

Rules are two-valued (a missing value makes a comparison false, ``not`` negates), so ``not`` turns
rising into falling, ``and``/``or`` keep a direction when all their parts agree, and any other use
of a series (``sum``, ``avg``, ``min``, ``max``, ``last_seen``, ``days_since``, ``==`` a positive
number, ``in``, ``exists`` ...) leaves its direction unknown.
"""

from __future__ import annotations

from collections.abc import Mapping

from rapport.rules import And, Compare, Const, EventFn, Node, Not, Operand, Or, Path
from rapport.rules.analysis import nodes
from rapport.rules.ast import CompareOp
from rapport.segments.functions import series_key
from rapport.workspaces.runtime import WorkspaceRuntime

RISING = 1
FALLING = -1
UNKNOWN = 0

_MIRROR: dict[str, CompareOp] = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_COUNTING = frozenset({"count", "distinct"})


def directions(rule: Node, rt: WorkspaceRuntime) -> dict[str, int]:
    """For each series id ``rule`` reads: RISING, FALLING or UNKNOWN (see the module text)."""
    out: dict[str, int] = {}
    _walk(rule, RISING, rt, out)
    return out


def skippable(directions_: Mapping[str, int], touched: frozenset[str], member: bool) -> bool:
    """Whether new events in the series ``touched`` cannot change the truth of a rule with these
    directions for a profile that is (``member``) or is not in it."""
    wanted = RISING if member else FALLING
    seen = False
    for series in touched:
        d = directions_.get(series)
        if d is None:
            continue
        if d != wanted:
            return False
        seen = True
    return seen


def _walk(node: Node, sign: int, rt: WorkspaceRuntime, out: dict[str, int]) -> None:
    if isinstance(node, And | Or):
        for item in node.items:
            _walk(item, sign, rt, out)
        return
    if isinstance(node, Not):
        _walk(node.item, -sign, rt, out)
        return
    if isinstance(node, Compare):
        found = _counting_compare(node, rt)
        if found is not None:
            series, direction = found
            for s in series:
                _note(out, s, sign * direction)
            return
    for part in nodes(node):
        for s in _series_of(part, rt):
            _note(out, s, UNKNOWN)


def _note(out: dict[str, int], series: str, direction: int) -> None:
    previous = out.get(series)
    out[series] = direction if previous is None or previous == direction else UNKNOWN


def _counting_compare(node: Compare, rt: WorkspaceRuntime) -> tuple[tuple[str, ...], int] | None:
    """(series, direction) when ``node`` compares a never-missing count with a number constant."""
    op: str = node.op
    counted, other = node.left, node.right
    series = _counted_series(counted, rt)
    if series is None:
        op, counted, other = _MIRROR[node.op], node.right, node.left
        series = _counted_series(counted, rt)
    if series is None or not isinstance(other, Const):
        return None
    value = other.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if op in (">", ">="):
        direction = RISING
    elif op in ("<", "<="):
        direction = FALLING
    elif value <= 0:  # a count is never negative: == 0 can only stop holding, != 0 only start
        direction = FALLING if op == "==" else RISING
    else:
        return None
    return series, direction


def _counted_series(operand: Operand, rt: WorkspaceRuntime) -> tuple[str, ...] | None:
    """The series of ``operand`` when it is a count that new events can only raise."""
    if isinstance(operand, EventFn):
        return (series_key(operand).id,) if operand.fn == "count" else None
    if isinstance(operand, Path) and operand.root == "computed" and len(operand.parts) == 1:
        trait = rt.traits.get(operand.parts[0])
        if trait is not None and trait.aggregate in _COUNTING and trait.denominator is None:
            return (trait.series.id,)
    return None


def _series_of(part: object, rt: WorkspaceRuntime) -> tuple[str, ...]:
    if isinstance(part, EventFn):
        return (series_key(part).id,)
    if isinstance(part, Path) and part.root == "computed" and part.parts:
        trait = rt.traits.get(part.parts[0])
        if trait is not None:
            return tuple(s.id for s in trait.all_series())
    return ()
