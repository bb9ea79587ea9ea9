"""A fast path for the commonest block: text with ``{{ path }}`` and ``{{ path | default: 'text' }}`` outputs.

Rendering such a block through python-liquid costs tens of microseconds, most of it setting up a render
context; substituting the values directly costs a few. ``plan`` recognises these templates from their parsed
nodes (anything else: ``None``), and ``substitute`` renders one, or returns ``None`` when a value is of a kind
whose printing it does not reproduce (a list, a boolean, a special property such as ``size``), so that the caller
renders with Liquid instead. Both agree with Liquid on everything they render (tested property).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from liquid import BoundTemplate
from liquid.builtin.content import ContentNode
from liquid.builtin.expressions import FilteredExpression, Path, PositionalArgument, StringLiteral
from liquid.builtin.output import OutputNode
from markupsafe import escape

SPECIAL: Final = frozenset({"size", "first", "last"})
"""Properties Liquid answers itself on a mapping that lacks them."""


@dataclass(frozen=True, slots=True)
class Output:
    """``{{ path | default: fallback }}``."""

    path: tuple[str, ...]
    fallback: str | None


Piece = str | Output


def plan(template: BoundTemplate) -> tuple[Piece, ...] | None:
    """The pieces of a template made only of text and plain outputs, or ``None``."""
    pieces: list[Piece] = []
    for node in template.nodes:
        if isinstance(node, ContentNode):
            pieces.append(node.text)
            continue
        if not isinstance(node, OutputNode) or not isinstance(node.expression, FilteredExpression):
            return None
        expression = node.expression
        if not isinstance(expression.left, Path) or not all(isinstance(s, str) for s in expression.left.path):
            return None
        fallback: str | None = None
        if expression.filters:
            if len(expression.filters) != 1:
                return None
            only = expression.filters[0]
            if only.name != "default" or len(only.args) != 1 or not isinstance(only.args[0], PositionalArgument):
                return None
            literal = only.args[0].value
            if not isinstance(literal, StringLiteral):
                return None
            fallback = literal.value
        pieces.append(Output(tuple(str(s) for s in expression.left.path), fallback))
    return tuple(pieces)


_MISSING: Final = object()


def _value(variables: Mapping[str, object], path: tuple[str, ...]) -> object:
    current: object = variables
    for part in path:
        if type(current) is not dict and not isinstance(current, Mapping):  # dicts skip the ABC check
            return _MISSING if current is None else NotImplemented
        if part not in current:
            return NotImplemented if part in SPECIAL else _MISSING
        current = current[part]
    return current


def substitute(pieces: tuple[Piece, ...], variables: Mapping[str, object], html: bool) -> str | None:
    """The pieces rendered with ``variables`` (HTML-escaped for ``html``), or ``None`` for Liquid to do it."""
    out: list[str] = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
            continue
        value = _value(variables, piece.path)
        if value is NotImplemented:
            return None
        if value is _MISSING or value is None or value == "":
            # A literal written in the template is the author's text: Liquid does not escape it.
            out.append(piece.fallback if piece.fallback is not None else "")
            continue
        if isinstance(value, str):
            text = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            text = str(value)
        else:
            return None
        out.append(str(escape(text)) if html else text)
    return newlines("".join(out))


def newlines(text: str) -> str:
    """Line ends as Liquid's output buffer writes them: ``\r\n`` and ``\r`` become ``\n``."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
