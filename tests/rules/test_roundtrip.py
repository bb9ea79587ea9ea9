"""Round trips of random rules through the text form and the JSON form, and their spans."""

from __future__ import annotations

import json
from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from rapport.rules import (
    And,
    Compare,
    Contains,
    DictContext,
    EventFn,
    In,
    Node,
    Not,
    Operand,
    Or,
    StartsWith,
    evaluate,
    from_json,
    parse,
    to_json,
    to_text,
)
from rapport.rules.analysis import event_functions, paths

from .strategies import json_values, rules


def _conditions(node: Node) -> Iterator[Node]:
    """Every boolean node of ``node``, including those inside ``where=`` rules."""
    yield node
    children: tuple[Node | Operand, ...] = ()
    if isinstance(node, And | Or):
        children = node.items
    elif isinstance(node, Not):
        children = (node.item,)
    elif isinstance(node, Compare | Contains | StartsWith):
        children = (node.left, node.right)
    elif isinstance(node, In):
        children = (node.left,)
    for child in children:
        if isinstance(child, EventFn) and child.where is not None:
            yield from _conditions(child.where)
        elif isinstance(child, And | Or | Not | Compare | In | Contains | StartsWith):
            yield from _conditions(child)


@settings(max_examples=400)
@given(rules)
def test_printed_rule_parses_back_to_the_same_ast(rule: Node) -> None:
    text = to_text(rule)
    assert parse(text) == rule, text
    assert to_text(parse(text)) == text


@settings(max_examples=300)
@given(rules)
def test_json_form_round_trips_through_json_text(rule: Node) -> None:
    form = to_json(rule)
    assert from_json(form) == rule
    assert from_json(json.loads(json.dumps(form))) == rule
    assert to_json(from_json(form)) == form


@settings(max_examples=200)
@given(rules)
def test_every_parsed_span_covers_the_text_of_its_node(rule: Node) -> None:
    text = to_text(rule)
    for node in _conditions(parse(text)):
        assert parse(text[node.span.start : node.span.end]) == node
        line_start = text.rfind("\n", 0, node.span.start) + 1
        assert node.span.col == node.span.start - line_start + 1


@st.composite
def _rule_and_profile(draw: st.DrawFn) -> tuple[Node, DictContext]:
    rule = draw(rules)
    values: dict[str, dict[str, object]] = {}
    for path in paths(rule):
        if draw(st.booleans()):
            continue
        target = values.setdefault(path.root, {})
        for part in path.parts[:-1]:
            nested = target.setdefault(part, {})
            if not isinstance(nested, dict):
                break
            target = nested
        else:
            target[path.parts[-1]] = draw(json_values)
    functions = {fn: draw(st.none() | json_values) for fn in event_functions(rule)}
    for fn in event_functions(rule):
        last_seen = EventFn("last_seen", fn.event, None, fn.within_ms, fn.where)
        functions.setdefault(last_seen, draw(st.none() | st.integers(0, 2**41)))
    now = draw(st.integers(0, 2**42))
    return rule, DictContext(values, now, functions, frozenset(draw(st.lists(st.text(max_size=2)))))


@settings(max_examples=300)
@given(_rule_and_profile())
def test_evaluation_never_raises_and_not_is_the_complement(case: tuple[Node, DictContext]) -> None:
    rule, ctx = case
    result = evaluate(rule, ctx)
    assert isinstance(result, bool)
    assert evaluate(Not(rule), ctx) is not result
    assert evaluate(parse(to_text(rule)), ctx) is result
