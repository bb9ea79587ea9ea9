"""Compiled rules decide as the interpreter does, reading the context with the very same calls."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapport.rules import (
    And,
    Compare,
    Const,
    Contains,
    DateConst,
    DictContext,
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
    evaluate,
    parse,
)
from rapport.rules.analysis import event_functions, nodes, paths, segments
from rapport.rules.ast import COMPARE_OPS, LITERAL_TYPES
from rapport.rules.compile import compile_rule
from rapport.rules.dates import MAX_MS, MIN_MS, format_iso, parse_iso
from rapport.rules.evaluate import real
from rapport.types import DAY, HOUR, Millis

from .strategies import json_values, rules, texts
from .test_evaluate import CASES, CTX

NOW: Millis = 1_769_904_000_000  # 2026-02-01


class Tier(enum.StrEnum):
    """A ``str`` subclass as code-built profiles may hold; not a string to the rule language."""

    GOLD = "gold"


class Level(enum.IntEnum):
    """An ``int`` subclass, which is a number to the rule language."""

    ONE = 1


Call = tuple[str, object]
Outcome = tuple[str, object, object]


@dataclass(slots=True)
class Recording:
    """An ``EvalContext`` that records every read it answers, in order."""

    inner: DictContext
    calls: list[Call] = field(default_factory=list)

    @property
    def now_ms(self) -> Millis:
        self.calls.append(("now_ms", None))
        return self.inner.now_ms

    def lookup(self, path: Path) -> tuple[bool, object]:
        self.calls.append(("lookup", path))
        return self.inner.lookup(path)

    def event_function(self, fn: EventFn) -> object | None:
        self.calls.append(("event_function", fn))
        return self.inner.event_function(fn)

    def in_segment(self, name: str) -> bool:
        self.calls.append(("in_segment", name))
        return self.inner.in_segment(name)


def _run(decide: Callable[[Recording], bool], ctx: DictContext) -> tuple[Outcome, list[Call]]:
    recording = Recording(ctx)
    try:
        result = decide(recording)
    except Exception as error:  # the engines must fail alike too (``days_since`` of a huge ``last_seen``)
        return ("raised", type(error), str(error)), recording.calls
    return ("returned", type(result), result), recording.calls


def assert_agrees(rule: Node, ctx: DictContext) -> None:
    """The compiled rule returns (or raises) what the interpreter does, after the same context reads."""
    compiled = compile_rule(rule)
    expected, expected_calls = _run(lambda recording: evaluate(rule, recording), ctx)
    actual, actual_calls = _run(compiled, ctx)
    assert actual == expected, rule
    assert actual_calls == expected_calls, rule


class Text(str):
    """A ``str`` subclass, which the rule language does not count as a string."""


class Whole(int):
    """An ``int`` subclass, which counts as a number."""


class Real(float):
    """A ``float`` subclass, which counts as a number."""


# Values of every kind, chosen to collide: numbers that round to the same double or saturate,
# signed zeros, ISO texts naming the same instants as date literals, bools beside 0 and 1.
BIG = 2**53
INTERESTING: tuple[object, ...] = (
    0, 1, -1, 0.0, -0.0, 1.0, 0.5, 42, 42.0, BIG, BIG + 1, float(BIG), 10**20, 10**400, -(10**400), 1e308,
    math.inf, -math.inf, math.nan, True, False, "", "a", "ab", "A", "42", "é",
    "2026-01-31", "2026-01-31T00:00:00Z", "2026-01-31 01:00:00+01:00", "2026-01-31T10:00:00.5Z", "2026-02-30",
    "2026-01-31T10:00", NOW, NOW - DAY, Tier.GOLD, Level.ONE, ("a", 1), [], {},
)
scalars = st.one_of(
    st.sampled_from(INTERESTING), st.none(), st.booleans(), json_values, texts, st.floats(), st.integers()
)
HUGE = (10**400, -(10**400))
"""Integers beyond the double range, which compare as infinities."""
PLAIN: tuple[object, ...] = (True, False, 0, 1, -0.0, 1.0, BIG, BIG + 1, *HUGE, math.inf, "", "a", "ab", "A", Text("a"),
                             Level.ONE, "2026-01-31", "2026-01-31T00:00:00Z")
"""Values for fields that meet no constant (``traits.a < traits.b``): every kind, and collisions between them."""


def _neighbours(literal: Literal_) -> list[object]:
    """Values that equal ``literal``, almost equal it, or are of a kind it is easily confused with."""
    if isinstance(literal, DateConst):
        ms, text = literal.ms, format_iso(literal.ms)
        return [ms, float(ms), ms + 1, ms - 1, text, text.replace("T", " "), format_iso(min(ms + 1, MAX_MS)),
                Text(text), [text]]
    value = literal.ms if isinstance(literal, DurationConst) else literal.value
    if value is None:
        return [None]
    if isinstance(value, bool):
        return [value, not value, int(value), float(value), [value]]
    if isinstance(value, int):
        return [value, value + 1, value - 1, -value, real(value), Whole(value), str(value), [value], *HUGE]
    if isinstance(value, float):
        close = [int(value)] if value.is_integer() else []
        return [value, -value, Real(value), math.nextafter(value, math.inf), str(value), [value], *close, *HUGE]
    instant = parse_iso(value)
    dates = [] if instant is None else [instant, float(instant)]
    return [value, str(value), value + "x", value[:-1], value.upper(), Text(value), [value], *dates]


Partners = dict[Path | EventFn | None, list[object]]


def _partners(rule: Node) -> Partners:
    """Values around the constants each field or event function meets in ``rule`` (``None``: all of them)."""
    partners: Partners = {None: []}
    for node in nodes(rule):
        if isinstance(node, Compare | Contains | StartsWith):
            pairs = [(node.left, node.right), (node.right, node.left)]
        elif isinstance(node, In):
            pairs = [(node.left, value) for value in node.values]
        else:
            continue
        for operand, other in pairs:
            if isinstance(operand, Path | EventFn) and isinstance(other, LITERAL_TYPES):
                near = _neighbours(other)
                partners.setdefault(operand, []).extend(near)
                partners[None].extend(near)
    return partners


# Strategies are built once: building them per draw would spend most of the time validating them.
FIELD_STATES = st.sampled_from(["absent", "value", "value", "value", "list", "null", "blocked"])
NOWS = st.one_of(st.just(NOW), st.integers(0, 2**42))
SEEN_AGO = st.sampled_from([None, 31 * DAY, 12 * HOUR, 0, -1])
"""How long before now a ``last_seen`` was (``None``: any value), so that ``days_since`` meets round constants."""
SMALL = st.integers(0, 4)
TENTHS = st.integers(0, 9)
ANY_INDEX = st.integers(0, 2**16)


def _atom(draw: st.DrawFn, near: list[object], drawn: list[object]) -> object:
    """A value near a constant, or equal to a value drawn before, or any value."""
    choice = draw(TENTHS)
    if near and choice < 6:
        value = near[draw(ANY_INDEX) % len(near)]
    elif drawn and choice < 8:
        value = drawn[draw(ANY_INDEX) % len(drawn)]
    else:
        value = draw(scalars)
    drawn.append(value)
    return value


def _draw_context(draw: st.DrawFn, rule: Node, partners: Partners) -> DictContext:
    """A profile that holds, lacks, or blocks (with a non-object on the way) each field of ``rule``."""
    drawn: list[object] = []
    values: dict[str, dict[str, object]] = {}
    for path in sorted(paths(rule), key=lambda p: (p.root, p.parts)):
        near = partners.get(path, [*PLAIN, *partners[None]])
        state = draw(FIELD_STATES)
        if state == "absent":
            continue
        target = values.setdefault(path.root, {})
        if state == "blocked":
            # An object where a value is compared, or a value where the path goes deeper.
            target[path.parts[0]] = {"x": 1} if len(path.parts) == 1 else _atom(draw, near, drawn)
            continue
        for part in path.parts[:-1]:
            nested = target.setdefault(part, {})
            if not isinstance(nested, dict):
                break
            target = nested
        else:
            if state == "list":
                target[path.parts[-1]] = [_atom(draw, near, drawn) for _ in range(draw(SMALL))]
            else:
                target[path.parts[-1]] = None if state == "null" else _atom(draw, near, drawn)
    now = draw(NOWS)
    functions: dict[EventFn, object] = {}
    for fn in event_functions(rule):
        near = partners.get(fn, [*PLAIN, *partners[None]])
        if fn.fn == "days_since":
            # ``last_seen`` so many days ago, give or take a millisecond, as the constants say.
            days = [value for value in near if isinstance(value, int | float) and abs(value) < 10**6]
            near = [now - round(day * DAY) + delta for day in days for delta in (-1, 0, 1)] + near
            fn = EventFn("last_seen", fn.event, None, fn.within_ms, fn.where)
        ago = draw(SEEN_AGO)
        functions[fn] = _atom(draw, near, drawn) if ago is None else now - ago
    members = frozenset(name for name in sorted(segments(rule)) if draw(st.booleans()))
    return DictContext(values, now, functions, members)


@st.composite
def rules_with_contexts(draw: st.DrawFn, rule_strategy: st.SearchStrategy[Node]) -> tuple[Node, list[DictContext]]:
    """A rule and a few profiles for it (profiles are cheaper to draw than rules)."""
    rule = draw(rule_strategy)
    partners = _partners(rule)
    return rule, [_draw_context(draw, rule, partners) for _ in range(1 + draw(SMALL))]


# A small vocabulary, so that fields, event functions and constants recur within one rule.
VOCABULARY_PATHS = (
    Path("traits", ("a",)), Path("traits", ("b",)), Path("traits", ("a", "b")), Path("computed", ("n",))
)
VOCABULARY_FUNCTIONS = (
    EventFn("count", "Order"),
    EventFn("last_seen", "Order"),
    EventFn("days_since", "Order"),
    EventFn("days_since", "Order", within_ms=30 * DAY),
    EventFn("sum", "Order", "revenue"),
)
VOCABULARY_LITERALS: tuple[Literal_, ...] = (
    *(Const(value) for value in (None, True, False, 0, -0.0, 1, 31, 42.0, BIG, 10**400, 1e308)),
    *(Const(value) for value in ("", "a", "ab", "42", "2026-01-31", "2026-01-31T00:00:00Z", Text("a"))),
    DurationConst(DAY, "1d"),
    DateConst(1_769_817_600_000, "2026-01-31"),
    DateConst(1_769_853_600_000, "2026-01-31T10:00:00Z"),
)
# Other constants now and then; cheaper to draw than ``strategies.literals`` with its Unicode texts.
other_literals: st.SearchStrategy[Literal_] = st.one_of(
    st.builds(Const, st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text("ab-:0T"))),
    st.builds(DurationConst, st.integers(1, 10**7).map(lambda seconds: seconds * 1000)),
    st.builds(DateConst, st.integers(MIN_MS, MAX_MS)),
)
# Rules are built from plain draws of these (rather than ``st.recursive`` over ``st.builds``),
# which makes drawing them several times faster.
PATHS = st.sampled_from(VOCABULARY_PATHS)
FUNCTIONS = st.sampled_from(VOCABULARY_FUNCTIONS)
LITERALS = st.sampled_from(VOCABULARY_LITERALS)
OPS = st.sampled_from(COMPARE_OPS)
LEAVES = st.sampled_from(
    ["compare", "compare", "compare", "bare", "in", "contains", "contains", "starts_with", "null", "segment"]
)
SEGMENTS = st.sampled_from(["vip", "lapsed"])


def _literal(draw: st.DrawFn) -> Literal_:
    return draw(other_literals) if draw(SMALL) == 0 else draw(LITERALS)


def _read(draw: st.DrawFn) -> Operand:
    """An operand read from the context."""
    return draw(PATHS) if draw(st.booleans()) else draw(FUNCTIONS)


def _operand(draw: st.DrawFn, read: bool) -> Operand:
    """An operand read from the context if ``read``, else mostly a literal."""
    return _read(draw) if read or draw(SMALL) < 2 else _literal(draw)


def _leaf(draw: st.DrawFn) -> Node:
    kind = draw(LEAVES)
    swap = draw(st.booleans())  # which side is read from the context (for sure)
    left, right = _operand(draw, not swap), _operand(draw, swap)
    if kind == "compare":
        return Compare(draw(OPS), left, right)
    if kind == "bare":
        return Compare(draw(st.sampled_from(["==", "!="])), draw(PATHS), Const(draw(st.booleans())))
    if kind == "in":
        return In(left, tuple(_literal(draw) for _ in range(draw(SMALL))))
    if kind == "contains":
        return Contains(left, right)
    if kind == "starts_with":
        return StartsWith(left, right)
    if kind == "null":
        return Exists(draw(PATHS)) if draw(st.booleans()) else IsNull(draw(PATHS), draw(st.booleans()))
    return InSegment(draw(SEGMENTS))


def _tree(draw: st.DrawFn, depth: int) -> Node:
    kind = draw(SMALL) if depth else 4
    if kind >= 3:
        return _leaf(draw)
    if kind == 2:
        return Not(_tree(draw, depth - 1))
    items = tuple(_tree(draw, depth - 1) for _ in range(1 + draw(st.integers(0, 2))))
    return And(items) if kind == 0 else Or(items)


@st.composite
def vocabulary_forests(draw: st.DrawFn) -> Node:
    """Several rules at once, as one ``and`` (their profiles are drawn together)."""
    return And(tuple(_tree(draw, depth=2) for _ in range(draw(st.integers(1, 6)))))


@settings(max_examples=2000)
@given(rules_with_contexts(vocabulary_forests()))
def test_compiled_rule_agrees_with_the_interpreter_over_a_small_vocabulary(
    case: tuple[Node, list[DictContext]],
) -> None:
    forest, profiles = case
    assert isinstance(forest, And)
    # Each rule on its own too: inside the ``and`` a false one would hide those after it.
    for rule in (*forest.items, forest, Or(forest.items)):
        for ctx in profiles:
            assert_agrees(rule, ctx)


@settings(max_examples=300)
@given(rules_with_contexts(rules))
def test_compiled_rule_agrees_with_the_interpreter_over_any_rule(case: tuple[Node, list[DictContext]]) -> None:
    rule, profiles = case
    for ctx in profiles:
        assert_agrees(rule, ctx)


@pytest.mark.parametrize(("rule", "expected"), CASES, ids=[rule for rule, _ in CASES])
def test_compiled_rule_passes_the_interpreter_cases(rule: str, expected: bool) -> None:
    assert compile_rule(parse(rule))(CTX) is expected


TRICKY = [
    ("traits.n == 9007199254740992", {"n": BIG + 1}, True),
    ("traits.n in [9007199254740992]", {"n": BIG + 1}, True),
    ("traits.tags contains 9007199254740992", {"tags": [BIG + 1]}, True),
    ("traits.n > 1000000000000000000000", {"n": 10**400}, True),
    ("traits.n == 1e308 or traits.n > 1e308", {"n": 10**400}, True),
    ("traits.n in [0]", {"n": -0.0}, True),
    ("traits.n in [1]", {"n": True}, False),
    ("traits.n in [true]", {"n": 1}, False),
    ("traits.n != 1", {"n": True}, True),
    ("traits.n", {"n": 1}, False),
    ("traits.n != true", {"n": "true"}, True),
    ("traits.n == 'gold'", {"n": Tier.GOLD}, False),
    ("traits.n != 'gold'", {"n": Tier.GOLD}, True),
    ("traits.n == 1", {"n": Level.ONE}, True),
    ("traits.n in ['gold', 2026-01-31]", {"n": "2026-01-31 01:00:00+01:00"}, True),
    ("traits.n in ['2026-01-31']", {"n": "2026-01-31T00:00:00Z"}, False),
    ("traits.n != 2026-01-31", {"n": "2026-02-30"}, True),
    ("traits.n < 2026-01-31", {"n": "2026-02-30"}, False),
    ("traits.n contains 2026-01-31", {"n": ["x", "2026-01-31T00:00:00Z"]}, True),
    ("traits.n contains 'a'", {"n": ("b", "a")}, True),
    ("traits.n contains 'gold'", {"n": [Tier.GOLD]}, False),
    ("traits.n contains 'a'", {"n": "banana"}, True),
    ("traits.n contains 1", {"n": [True, None, 1.0]}, True),
    ("traits.n contains true", {"n": [1]}, False),
    ("traits.n starts_with 'ba'", {"n": "banana"}, True),
    ("traits.n starts_with 'ba'", {"n": ["banana"]}, False),
    ("traits.n > traits.m", {"n": BIG + 1, "m": BIG}, False),
    ("traits.n >= traits.m", {"n": True, "m": False}, False),
    ("traits.n == traits.m", {"n": "x"}, False),
    ("traits.n != null", {"n": 1}, False),
    ("not traits.n != null", {"n": 1}, True),
]


@pytest.mark.parametrize(("rule", "traits", "expected"), TRICKY, ids=[f"{rule} {traits}" for rule, traits, _ in TRICKY])
def test_tricky_comparisons(rule: str, traits: dict[str, object], expected: bool) -> None:
    ctx = DictContext({"traits": traits}, NOW)
    assert evaluate(parse(rule), ctx) is expected
    assert compile_rule(parse(rule))(ctx) is expected


def test_days_since_of_a_huge_last_seen_raises_in_both_engines() -> None:
    ctx = DictContext({}, NOW, {EventFn("last_seen", "Order"): 10**400})
    rule = parse("days_since('Order') > 1")
    with pytest.raises(OverflowError):
        evaluate(rule, ctx)
    with pytest.raises(OverflowError):
        compile_rule(rule)(ctx)


def test_constant_parts_are_decided_at_compile_time_but_earlier_reads_still_happen() -> None:
    rule = parse("traits.a == 1 and 2 < 1 and traits.b == 1")
    ctx = Recording(DictContext({"traits": {"a": 1, "b": 1}}))
    assert compile_rule(rule)(ctx) is False
    assert ctx.calls == [("lookup", Path("traits", ("a",)))]
    assert compile_rule(parse("1 < 2 or traits.a"))(Recording(DictContext({}))) is True


def test_each_operand_is_read_once_per_call_and_nothing_is_cached_between_calls() -> None:
    rule = parse("traits.a > 1 and traits.a < 10 and days_since('Order') < 2")
    compiled = compile_rule(rule)
    for a, expected in ((5, True), (50, False)):
        ctx = Recording(DictContext({"traits": {"a": a}}, NOW, {EventFn("last_seen", "Order"): NOW - DAY}))
        assert compiled(ctx) is expected
        assert [name for name, _ in ctx.calls] == (
            ["lookup", "lookup", "event_function", "now_ms"] if expected else ["lookup", "lookup"]
        )


def test_a_constant_of_a_str_subclass_equals_only_values_of_that_type() -> None:
    rule = In(Path("traits", ("n",)), (Const(Text("a")),))
    for value, expected in (("a", False), (Text("a"), True)):
        ctx = DictContext({"traits": {"n": value}})
        assert evaluate(rule, ctx) is expected
        assert compile_rule(rule)(ctx) is expected
