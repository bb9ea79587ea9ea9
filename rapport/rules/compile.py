"""Compiles a rule into nested closures that decide it as ``rapport.rules.evaluate`` does, only faster.

The interpreter re-discovers on every call what the rule already says: which operand is a constant,
what kind of value it is, which operator applies. ``compile_rule`` settles all of that once. A
comparison with a constant becomes one closure that reads its operand, checks the operand's kind
against the constant's and compares with a pre-converted constant; ``in`` over constants looks the
value up in sets split by kind; comparisons between constants are decided at compile time.

The closures read the context exactly as the interpreter does (the same calls, in the same order,
each operand once), so a context that counts or records its reads sees no difference, and the
compiled rule may be kept and applied to any number of contexts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Literal, TypeAlias

from rapport.errors import ValidationError
from rapport.rules.ast import (
    LITERAL_TYPES,
    NODE_TYPES,
    And,
    Compare,
    CompareOp,
    Const,
    Contains,
    DateConst,
    DurationConst,
    EventFn,
    Exists,
    In,
    InSegment,
    IsNull,
    Literal_,
    Node,
    Not,
    Operand,
    Or,
    Path,
    StartsWith,
)
from rapport.rules.dates import parse_iso
from rapport.rules.evaluate import _ORDER, EvalContext, evaluate, real
from rapport.types import DAY, Millis

Predicate: TypeAlias = Callable[[EvalContext], bool]
"""A compiled rule: whether the profile behind the context satisfies it."""

_Getter: TypeAlias = Callable[[EvalContext], object]
_Test: TypeAlias = Callable[[Any], bool]
_Kind = Literal["missing", "number", "date", "str", "bool", "other"]

_MISSING = object()
_OPS: Mapping[str, Callable[[Any, Any], bool]] = _ORDER
"""The comparison functions, shared with the interpreter."""
_FLIPPED: dict[CompareOp, CompareOp] = {"==": "==", "!=": "!=", ">": "<", ">=": "<=", "<": ">", "<=": ">="}


class _DateLiteral:
    """The value of a ``DateConst`` operand where it meets no comparison (it is never a string or list)."""

    __slots__ = ()


class _NoContext:
    """The context for deciding constant comparisons at compile time, which read nothing."""

    @property
    def now_ms(self) -> Millis:
        raise AssertionError("a constant rule read the clock")

    def lookup(self, path: Path) -> tuple[bool, object]:
        raise AssertionError("a constant rule read a field")

    def event_function(self, fn: EventFn) -> object | None:
        raise AssertionError("a constant rule read an event function")

    def in_segment(self, name: str) -> bool:
        raise AssertionError("a constant rule read a segment")


def compile_rule(node: Node) -> Predicate:
    """A function deciding ``node`` for a context exactly as ``evaluate(node, ctx)`` does."""
    compiled = _compile(node)
    if isinstance(compiled, bool):
        constant = compiled

        def constant_rule(ctx: EvalContext) -> bool:
            return constant

        return constant_rule
    return compiled


def _compile(node: Node) -> Predicate | bool:
    """A predicate for ``node``, or its value when it reads nothing from the context."""
    if isinstance(node, And | Or):
        return _compile_junction(node)
    if isinstance(node, Not):
        item = _compile(node.item)
        if isinstance(item, bool):
            return not item
        return lambda ctx: not item(ctx)
    if isinstance(node, Compare | In | Contains | StartsWith) and _all_literal(node):
        return evaluate(node, _NoContext())
    if isinstance(node, Compare):
        return _compile_compare(node)
    if isinstance(node, In):
        return _compile_in(node)
    if isinstance(node, Contains):
        return _compile_contains(node)
    if isinstance(node, StartsWith):
        return _compile_starts_with(node)
    if isinstance(node, Exists | IsNull):
        return _compile_null_test(node)
    if isinstance(node, InSegment):
        name = node.name
        return lambda ctx: ctx.in_segment(name)
    expected = ", ".join(kind.__name__ for kind in NODE_TYPES)
    raise ValidationError(f"cannot compile {node!r}; expected one of {expected}", code="invalid_rule")


def _all_literal(node: Compare | In | Contains | StartsWith) -> bool:
    if isinstance(node, In):
        return isinstance(node.left, LITERAL_TYPES)
    return isinstance(node.left, LITERAL_TYPES) and isinstance(node.right, LITERAL_TYPES)


def _compile_junction(node: And | Or) -> Predicate | bool:
    """``and``/``or`` short-circuiting over its items; constant items are dropped or end the scan."""
    decisive = isinstance(node, Or)  # the item value that settles the junction
    parts: list[Predicate] = []
    for item in node.items:
        # Every part returns a bool, so ``a(ctx) and b(ctx)`` is one, as ``all``/``any`` return;
        # only a context's ``in_segment`` could answer with another truthy value.
        compiled = _compile(item) if not isinstance(item, InSegment) else _segment_member(item.name)
        if compiled is decisive:
            return decisive if not parts else _then(tuple(parts), decisive)
        if not isinstance(compiled, bool):
            parts.append(compiled)
    if not parts:
        return not decisive
    return _any(tuple(parts)) if decisive else _all(tuple(parts))


def _segment_member(name: str) -> Predicate:
    return lambda ctx: bool(ctx.in_segment(name))


def _all(parts: tuple[Predicate, ...]) -> Predicate:
    if len(parts) == 2:
        a, b = parts
        return lambda ctx: a(ctx) and b(ctx)
    if len(parts) == 3:
        a, b, c = parts
        return lambda ctx: a(ctx) and b(ctx) and c(ctx)

    def all_of(ctx: EvalContext) -> bool:
        for part in parts:  # noqa: SIM110 - a loop skips all()'s generator, twice as fast here
            if not part(ctx):
                return False
        return True

    return all_of


def _any(parts: tuple[Predicate, ...]) -> Predicate:
    if len(parts) == 2:
        a, b = parts
        return lambda ctx: a(ctx) or b(ctx)
    if len(parts) == 3:
        a, b, c = parts
        return lambda ctx: a(ctx) or b(ctx) or c(ctx)

    def any_of(ctx: EvalContext) -> bool:
        for part in parts:  # noqa: SIM110 - as in all_of
            if part(ctx):
                return True
        return False

    return any_of


def _then(parts: tuple[Predicate, ...], result: bool) -> Predicate:
    """Evaluate ``parts`` as the junction would up to its constant item, then return ``result``."""
    scan = _any(parts) if result else _all(parts)

    def then(ctx: EvalContext) -> bool:
        scan(ctx)
        return result

    return then


def _compile_compare(node: Compare) -> Predicate:
    left, right = node.left, node.right
    if isinstance(right, LITERAL_TYPES):
        return _against(node.op, left, right)
    if isinstance(left, LITERAL_TYPES):
        return _against(_FLIPPED[node.op], right, left)
    get_left, get_right, compare = _getter(left), _getter(right), _plain_compare(node.op)

    def compare_operands(ctx: EvalContext) -> bool:
        a = get_left(ctx)
        b = get_right(ctx)
        return False if a is _MISSING or b is _MISSING else compare(a, b)

    return compare_operands


def _against(op: CompareOp, operand: Operand, literal: Literal_) -> Predicate:
    """``operand op literal`` for an operand read from the context."""
    kind, constant = _classify(literal)
    if kind == "missing":
        return _read_then_false(operand)
    if kind == "bool" and op in ("==", "!=") and isinstance(operand, Path):
        # A bare boolean field (``consent.analytics``): bools are singletons, so kind and value
        # checks reduce to one identity test; ``!=`` is true for every present value of another kind.
        path, equal = operand, op == "=="

        def is_bool(ctx: EvalContext) -> bool:
            found, value = ctx.lookup(path)
            if not found or value is None:
                return False
            return (value is constant) is equal

        return is_bool
    return _on_present(operand, _test(op, kind, constant))


def _classify(literal: Literal_) -> tuple[_Kind, Any]:
    """The kind of a literal's value and the value as its comparisons use it."""
    if isinstance(literal, DateConst):
        return "date", real(literal.ms)
    value: object = literal.ms if isinstance(literal, DurationConst) else literal.value
    if value is None:
        return "missing", None
    if isinstance(value, bool):
        return "bool", value
    if isinstance(value, int | float):
        return "number", real(value)
    if isinstance(value, str):
        return "str", value
    return "other", value


def _test(op: CompareOp, kind: _Kind, constant: Any) -> _Test:
    """Whether a present value stands in ``op`` to a constant of ``kind``."""
    compare = _OPS[op]
    across = op == "!="  # the result between values of different kinds
    if kind == "number":
        return _number_test(compare, constant, across)
    if kind == "date":
        return _date_test(compare, constant, across)
    if kind == "str":
        text_type = type(constant)
        return lambda value: compare(value, constant) if type(value) is text_type else across
    if kind == "bool" and op in ("==", "!="):
        return lambda value: compare(value, constant) if type(value) is bool else across
    # Booleans have no order, and a constant of another kind ("other") equals no value.
    result = False if kind == "bool" else across
    return lambda value: result


def _number_test(compare: Callable[[Any, Any], bool], constant: float, across: bool) -> _Test:
    def number_test(value: Any) -> bool:
        kind = type(value)
        if kind is float:
            return compare(value, constant)
        if kind is int:
            try:
                return compare(float(value), constant)
            except OverflowError:
                return compare(math.inf if value > 0 else -math.inf, constant)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return compare(real(value), constant)
        return across

    return number_test


def _date_test(compare: Callable[[Any, Any], bool], constant: float, across: bool) -> _Test:
    number_test = _number_test(compare, constant, across)

    def date_test(value: Any) -> bool:
        if isinstance(value, str):
            ms = parse_iso(value)
            return across if ms is None else compare(float(ms), constant)
        return number_test(value)

    return date_test


def _plain_compare(op: CompareOp) -> Callable[[object, object], bool]:
    """``a op b`` for two present values read from the context (so neither is a date literal)."""
    compare = _OPS[op]
    across = op == "!="
    ordering = op not in ("==", "!=")

    def plain_compare(a: object, b: object) -> bool:
        if _is_number(a) and _is_number(b):
            return compare(real(a), real(b))  # type: ignore[arg-type]
        if type(a) is type(b) and isinstance(a, str | bool):
            return False if ordering and isinstance(a, bool) else compare(a, b)
        return across

    return plain_compare


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compile_in(node: In) -> Predicate:
    """``left in [...]``: one set lookup per kind of value instead of a comparison per element."""
    constants = [_classify(value) for value in node.values]
    constants = [(kind, constant) for kind, constant in constants if kind != "missing"]
    if not constants:
        return _read_then_false(node.left)
    numbers = frozenset(c for kind, c in constants if kind in ("number", "date"))
    dates = frozenset(c for kind, c in constants if kind == "date")
    texts = frozenset(c for kind, c in constants if kind == "str" and type(c) is str)
    bools = frozenset(c for kind, c in constants if kind == "bool")
    tests = tuple(_test("==", kind, constant) for kind, constant in constants)

    def is_in(value: Any) -> bool:
        kind = type(value)
        if kind is str:
            if value in texts:
                return True
            if dates:
                ms = parse_iso(value)
                return ms is not None and float(ms) in dates
            return False
        if kind is float:
            return value in numbers
        if kind is int:
            return real(value) in numbers
        if kind is bool:
            return value in bools
        return any(test(value) for test in tests)  # subclasses of the basic types, lists, objects

    return _on_present(node.left, is_in)


def _compile_contains(node: Contains) -> Predicate:
    if isinstance(node.right, LITERAL_TYPES) and not isinstance(node.left, LITERAL_TYPES):
        return _contains_literal(node.left, node.right)
    get_container, get_item = _getter(node.left), _getter(node.right)
    equal = _plain_compare("==")

    def contains(ctx: EvalContext) -> bool:
        container = get_container(ctx)
        item = get_item(ctx)
        if container is _MISSING or item is _MISSING:
            return False
        if isinstance(container, str):
            return isinstance(item, str) and item in container
        if isinstance(container, list | tuple):
            return any(equal(element, item) for element in container)
        return False

    return contains


def _contains_literal(operand: Operand, literal: Literal_) -> Predicate:
    kind, constant = _classify(literal)
    if kind == "missing":
        return _read_then_false(operand)
    equal = _test("==", kind, constant)
    is_text = kind == "str"
    # Only an element of the constant's exact type can equal it, and ``in`` finds every such one.
    prefilter = is_text and type(constant) is str

    def contains(container: Any) -> bool:
        if isinstance(container, str):
            return is_text and constant in container
        if isinstance(container, list | tuple):
            if prefilter and constant not in container:
                return False
            return any(map(equal, container))
        return False

    return _on_present(operand, contains)


def _compile_starts_with(node: StartsWith) -> Predicate:
    if isinstance(node.right, Const) and isinstance(node.right.value, str) and isinstance(node.left, Path | EventFn):
        prefix = node.right.value
        return _on_present(node.left, lambda value: isinstance(value, str) and value.startswith(prefix))
    get_text, get_prefix = _getter(node.left), _getter(node.right)

    def starts_with(ctx: EvalContext) -> bool:
        text = get_text(ctx)
        prefix = get_prefix(ctx)
        return isinstance(text, str) and isinstance(prefix, str) and text.startswith(prefix)

    return starts_with


def _compile_null_test(node: Exists | IsNull) -> Predicate:
    present_means = isinstance(node, Exists) or node.negated
    if isinstance(node.path, Path):
        path = node.path

        def null_test(ctx: EvalContext) -> bool:
            found, value = ctx.lookup(path)
            return present_means if found and value is not None else not present_means

        return null_test
    get = _getter(node.path)
    return lambda ctx: present_means if get(ctx) is not _MISSING else not present_means


def _on_present(operand: Operand, test: _Test) -> Predicate:
    """Read ``operand`` once: false when it is missing, else ``test`` of its value."""
    if isinstance(operand, Path):
        path = operand

        def on_field(ctx: EvalContext) -> bool:
            found, value = ctx.lookup(path)
            return test(value) if found and value is not None else False

        return on_field
    if isinstance(operand, EventFn) and operand.fn != "days_since":
        fn = operand

        def on_function(ctx: EvalContext) -> bool:
            value = ctx.event_function(fn)
            return False if value is None else test(value)

        return on_function
    get = _getter(operand)

    def on_value(ctx: EvalContext) -> bool:
        value = get(ctx)
        return False if value is _MISSING else test(value)

    return on_value


def _read_then_false(operand: Operand) -> Predicate:
    """False, after reading ``operand`` as the interpreter would."""
    get = _getter(operand)

    def read_then_false(ctx: EvalContext) -> bool:
        get(ctx)
        return False

    return read_then_false


def _getter(operand: Operand) -> _Getter:
    """A function reading the operand's value from a context, ``_MISSING`` when it has none."""
    if isinstance(operand, Path):
        path = operand

        def field_value(ctx: EvalContext) -> object:
            found, value = ctx.lookup(path)
            return value if found and value is not None else _MISSING

        return field_value
    if isinstance(operand, EventFn):
        if operand.fn == "days_since":
            return _days_since(operand)
        fn = operand

        def function_value(ctx: EvalContext) -> object:
            value = ctx.event_function(fn)
            return _MISSING if value is None else value

        return function_value
    constant: object
    if isinstance(operand, DateConst):
        constant = _DateLiteral()
    elif isinstance(operand, DurationConst):
        constant = operand.ms
    else:
        constant = _MISSING if operand.value is None else operand.value
    return lambda ctx: constant


def _days_since(operand: EventFn) -> _Getter:
    last_seen = replace(operand, fn="last_seen")

    def days_since(ctx: EvalContext) -> object:
        last = ctx.event_function(last_seen)
        if isinstance(last, bool) or not isinstance(last, int | float):
            return _MISSING
        return (ctx.now_ms - last) / DAY

    return days_since
