"""Static facts about a rule: the fields it reads, the event functions and segments it uses."""

from __future__ import annotations

from collections.abc import Iterator

from rapport.rules.ast import (
    And,
    Compare,
    Contains,
    EventFn,
    Exists,
    In,
    InSegment,
    IsNull,
    Node,
    Not,
    Operand,
    Or,
    Path,
    StartsWith,
)


def _walk(node: Node) -> Iterator[Node | Operand]:
    """Every node and operand of ``node`` in source order, not descending into ``where=`` rules."""
    yield node
    if isinstance(node, And | Or):
        for item in node.items:
            yield from _walk(item)
    elif isinstance(node, Not):
        yield from _walk(node.item)
    elif isinstance(node, Compare | Contains | StartsWith):
        yield node.left
        yield node.right
    elif isinstance(node, In):
        yield node.left
        yield from node.values
    elif isinstance(node, Exists | IsNull):
        yield node.path


def nodes(node: Node) -> Iterator[Node | Operand]:
    """Every node and operand of ``node`` in source order (not inside ``where=`` rules)."""
    return _walk(node)


def paths(node: Node) -> frozenset[Path]:
    """Every profile, context or event field the rule reads (``where=`` paths name event properties
    of the aggregated events and are not included)."""
    return frozenset(n for n in _walk(node) if isinstance(n, Path))


def event_functions(node: Node) -> tuple[EventFn, ...]:
    """The distinct event functions of the rule, in the order they first appear."""
    return tuple(dict.fromkeys(n for n in _walk(node) if isinstance(n, EventFn)))


def segments(node: Node) -> frozenset[str]:
    """The names of the segments the rule tests with ``in_segment``."""
    return frozenset(n.name for n in _walk(node) if isinstance(n, InSegment))
