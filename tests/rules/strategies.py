"""Hypothesis strategies for random rule ASTs and the profiles they are evaluated against."""

from __future__ import annotations

from hypothesis import strategies as st

from rapport.durations import format_duration
from rapport.rules import (
    And,
    Compare,
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
from rapport.rules.ast import COMPARE_OPS, FUNCTIONS, PROPERTY_FUNCTIONS, ROOTS, CompareOp, FnName, Root
from rapport.rules.dates import MAX_MS, MIN_MS, format_iso
from rapport.types import DAY, SECOND

# Text with the characters that strings must escape, plus anything else Unicode allows.
texts = st.text(
    alphabet=st.one_of(st.sampled_from("\"'\\\n\r\t\x00\x7f ab"), st.characters(exclude_categories=["Cs"])),
    max_size=8,
)
identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
keywords = st.sampled_from(["and", "or", "not", "in", "is", "null", "true", "false", "exists", "count"])
field_names = st.one_of(identifiers, keywords, texts.filter(bool))

numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
)
consts = st.builds(Const, st.one_of(st.none(), st.booleans(), numbers, texts))


@st.composite
def durations(draw: st.DrawFn) -> DurationConst:
    ms = draw(st.integers(min_value=1, max_value=10**7)) * SECOND
    unit_text = draw(st.sampled_from(["", format_duration(ms), f"{ms // SECOND}s", "bogus"]))
    return DurationConst(ms, unit_text)


@st.composite
def dates(draw: st.DrawFn) -> DateConst:
    ms = draw(
        st.one_of(st.integers(MIN_MS // DAY + 1, MAX_MS // DAY).map(lambda d: d * DAY), st.integers(MIN_MS, MAX_MS))
    )
    text = draw(st.sampled_from(["", format_iso(ms), "2026-01-31"]))
    return DateConst(ms, text)


literals: st.SearchStrategy[Literal_] = st.one_of(consts, durations(), dates())


def paths(roots: tuple[Root, ...] = ROOTS) -> st.SearchStrategy[Path]:
    return st.builds(Path, st.sampled_from(roots), st.lists(field_names, min_size=1, max_size=3).map(tuple))


def _boolean(
    operands: st.SearchStrategy[Operand], leaf_paths: st.SearchStrategy[Path], segments: bool
) -> st.SearchStrategy[Node]:
    ops: st.SearchStrategy[CompareOp] = st.sampled_from(COMPARE_OPS)
    leaves: list[st.SearchStrategy[Node]] = [
        st.builds(Compare, ops, operands, operands),
        st.builds(Compare, st.just("=="), leaf_paths, st.just(Const(True))),
        st.builds(In, operands, st.lists(literals, max_size=3).map(tuple)),
        st.builds(Contains, operands, operands),
        st.builds(StartsWith, operands, operands),
        st.builds(Exists, leaf_paths),
        st.builds(IsNull, leaf_paths, st.booleans()),
    ]
    if segments:
        leaves.append(st.builds(InSegment, texts))
    return st.recursive(
        st.one_of(leaves),
        lambda children: st.one_of(
            st.builds(And, st.lists(children, min_size=2, max_size=3).map(tuple)),
            st.builds(Or, st.lists(children, min_size=2, max_size=3).map(tuple)),
            st.builds(Not, children),
        ),
        max_leaves=6,
    )


where_rules = _boolean(st.one_of(paths(("event",)), literals), paths(("event",)), segments=False)


@st.composite
def event_functions(draw: st.DrawFn) -> EventFn:
    fn: FnName = draw(st.sampled_from(FUNCTIONS))
    prop = draw(field_names) if fn in PROPERTY_FUNCTIONS else None
    within = draw(st.none() | st.integers(min_value=1, max_value=10**6).map(lambda n: n * SECOND))
    where = draw(st.none() | where_rules)
    return EventFn(fn, draw(texts), prop, within, where)


operands: st.SearchStrategy[Operand] = st.one_of(paths(), literals, event_functions())
rules: st.SearchStrategy[Node] = _boolean(operands, paths(), segments=True)

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, texts, st.sampled_from(["2026-01-31", "2026-01-31T10:00:00Z"])),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(field_names, children, max_size=3),
    max_leaves=5,
)
