"""Evaluates a rule against one profile in memory; the SQL compiler must select the same profiles.

Two-valued semantics (DESIGN 4.5): a missing value (not found, or null) makes every comparison
false, and ``not`` of a false comparison is true. Values compare only within a kind:

- numbers with numbers (a bool is not a number); durations are numbers of milliseconds. Numbers
  compare as IEEE doubles, as SQL ``REAL``/``DOUBLE PRECISION`` do: ``2**53 + 1 == 2**53`` holds,
  and an integer beyond the double range compares as an infinity of its sign;
- strings with strings, by code point;
- booleans with booleans, for ``==`` and ``!=`` only;
- dates with numbers (epoch milliseconds), dates, and strings that are ISO dates
  (``rapport.rules.dates``); any other string is of another kind.

Across kinds ``==`` is false and ``!=`` is true; ordering is false. ``days_since(...)`` is the
number of days (a float) from the matching ``last_seen(...)`` to ``now_ms``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast

from rapport.rules.ast import (
    And,
    Compare,
    Const,
    Contains,
    DateConst,
    DurationConst,
    EventFn,
    Exists,
    In,
    IsNull,
    Node,
    Not,
    Operand,
    Or,
    Path,
    StartsWith,
)
from rapport.rules.dates import parse_iso
from rapport.types import DAY, Millis


class EvalContext(Protocol):
    """What a rule can read about one profile at one instant."""

    @property
    def now_ms(self) -> Millis: ...

    def lookup(self, path: Path) -> tuple[bool, object]:
        """``(found, value)`` for a field; a found ``None`` counts as missing."""
        ...

    def event_function(self, fn: EventFn) -> object | None:
        """The value of an event function, or ``None`` when it has none (an average of no events).

        Counts and aggregates are numbers, ``last_seen``/``first_seen`` epoch milliseconds. It is
        never asked for ``days_since``, which the evaluator derives from ``last_seen``.
        """
        ...

    def in_segment(self, name: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class _Date:
    """A value known to be an instant, so that strings on the other side are read as ISO dates."""

    ms: Millis


_MISSING = object()
_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def real(number: int | float) -> float:
    """``number`` as the IEEE double SQL compares it as; integers past the double range saturate."""
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def _same_kind(a: object, b: object) -> tuple[object, object] | None:
    """``a`` and ``b`` as comparable Python values, or ``None`` when their kinds differ."""
    if isinstance(a, _Date) or isinstance(b, _Date):
        ms = [_date_ms(v) for v in (a, b)]
        return None if ms[0] is None or ms[1] is None else (real(ms[0]), real(ms[1]))
    if _is_number(a) and _is_number(b):
        return real(cast(float, a)), real(cast(float, b))
    if type(a) is type(b) and isinstance(a, str | bool):
        return a, b
    return None


def _date_ms(value: object) -> Millis | float | None:
    if isinstance(value, _Date):
        return value.ms
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return parse_iso(value) if isinstance(value, str) else None


def _compare(op: str, a: object, b: object) -> bool:
    if a is _MISSING or b is _MISSING:
        return False
    pair = _same_kind(a, b)
    if pair is None:
        return op == "!="
    if op not in ("==", "!=") and isinstance(pair[0], bool):
        return False
    return _ORDER[op](*pair)


def _value(node: Operand, ctx: EvalContext) -> object:
    """The operand's value, or ``_MISSING``."""
    if isinstance(node, Path):
        found, value = ctx.lookup(node)
        return value if found and value is not None else _MISSING
    if isinstance(node, Const):
        return _MISSING if node.value is None else node.value
    if isinstance(node, DurationConst):
        return node.ms
    if isinstance(node, DateConst):
        return _Date(node.ms)
    if node.fn == "days_since":
        last = ctx.event_function(replace(node, fn="last_seen"))
        if isinstance(last, bool) or not isinstance(last, int | float):
            return _MISSING
        return (ctx.now_ms - last) / DAY
    value = ctx.event_function(node)
    return _MISSING if value is None else value


def _contains(container: object, item: object) -> bool:
    if container is _MISSING or item is _MISSING:
        return False
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, list | tuple):
        return any(_compare("==", element, item) for element in container)
    return False


def evaluate(node: Node, ctx: EvalContext) -> bool:
    """Whether the profile behind ``ctx`` satisfies ``node``."""
    if isinstance(node, And):
        return all(evaluate(item, ctx) for item in node.items)
    if isinstance(node, Or):
        return any(evaluate(item, ctx) for item in node.items)
    if isinstance(node, Not):
        return not evaluate(node.item, ctx)
    if isinstance(node, Compare):
        return _compare(node.op, _value(node.left, ctx), _value(node.right, ctx))
    if isinstance(node, In):
        left = _value(node.left, ctx)
        return any(_compare("==", left, _value(v, ctx)) for v in node.values)
    if isinstance(node, Contains):
        return _contains(_value(node.left, ctx), _value(node.right, ctx))
    if isinstance(node, StartsWith):
        text, prefix = _value(node.left, ctx), _value(node.right, ctx)
        return isinstance(text, str) and isinstance(prefix, str) and text.startswith(prefix)
    if isinstance(node, Exists):
        return _value(node.path, ctx) is not _MISSING
    if isinstance(node, IsNull):
        return (_value(node.path, ctx) is _MISSING) is not node.negated
    return ctx.in_segment(node.name)


@dataclass(frozen=True, slots=True)
class DictContext:
    """An ``EvalContext`` over plain data: ``values`` maps each path root to its (nested) fields.

    ``functions`` holds the value of each event function the rule uses; ``segments`` the names of
    the profile's current segments.
    """

    values: Mapping[str, Mapping[str, object]]
    now_ms: Millis = 0
    functions: Mapping[EventFn, object] = field(default_factory=dict)
    segments: frozenset[str] = frozenset()

    def lookup(self, path: Path) -> tuple[bool, object]:
        current: object = self.values.get(path.root, _MISSING)
        for part in path.parts:
            if not isinstance(current, Mapping) or part not in current:
                return False, None
            current = current[part]
        return current is not _MISSING, current

    def event_function(self, fn: EventFn) -> object | None:
        return self.functions.get(fn)

    def in_segment(self, name: str) -> bool:
        return name in self.segments


def evaluate_where(node: Node, properties: Mapping[str, object], now_ms: Millis) -> bool:
    """Whether one event with ``properties`` satisfies a ``where=`` rule (paths ``event.<a>.<b>``)."""
    return evaluate(node, DictContext({"event": properties}, now_ms))
