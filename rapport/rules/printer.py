"""Prints an AST as canonical rule text that parses back to the same AST."""

from __future__ import annotations

import re

from rapport.durations import format_duration, parse_duration
from rapport.errors import ValidationError
from rapport.rules.ast import (
    And,
    Compare,
    Const,
    Contains,
    DateConst,
    DurationConst,
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
from rapport.rules.dates import LITERAL_PATTERN, format_iso, match_to_ms

_BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quote(text: str) -> str:
    """A double-quoted string literal for ``text``, escaping quotes, backslashes and control characters."""
    out = []
    for c in text:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _name(part: str) -> str:
    return part if _BARE_NAME.fullmatch(part) else quote(part)


def _duration(node: DurationConst) -> str:
    try:
        if node.text and parse_duration(node.text) == node.ms:
            return node.text
    except ValidationError:
        pass
    return format_duration(node.ms)


def _date(node: DateConst) -> str:
    m = LITERAL_PATTERN.fullmatch(node.text)
    return node.text if m is not None and match_to_ms(m) == node.ms else format_iso(node.ms)


def _operand(node: Operand) -> str:
    if isinstance(node, Path):
        return ".".join((node.root, *(_name(p) for p in node.parts)))
    if isinstance(node, Const):
        value = node.value
        if value is None or isinstance(value, bool):
            return {None: "null", True: "true", False: "false"}[value]
        if isinstance(value, str):
            return quote(value)
        return repr(value)
    if isinstance(node, DurationConst):
        return _duration(node)
    if isinstance(node, DateConst):
        return _date(node)
    args = [quote(node.event)]
    if node.property is not None:
        args.append(quote(node.property))
    if node.within_ms is not None:
        args.append(f"within={format_duration(node.within_ms)}")
    if node.where is not None:
        args.append(f"where={to_text(node.where)}")
    return f"{node.fn}({', '.join(args)})"


def _is_truth_test(node: Compare) -> bool:
    """Whether ``node`` is what a bare path or boolean parses to, so it prints bare."""
    left = node.left
    return (
        node.op == "=="
        and node.right == Const(True)
        and (isinstance(left, Path) or (isinstance(left, Const) and isinstance(left.value, bool)))
    )


def _child(node: Node, parent: type[And | Or | Not]) -> str:
    """``node`` as an operand of ``parent``, in parentheses where precedence requires them."""
    tight = isinstance(node, And | Or) if parent is not Or else isinstance(node, Or)
    text = to_text(node)
    return f"({text})" if tight else text


def to_text(node: Node | Operand) -> str:
    """Canonical rule text for ``node``; ``parse(to_text(node)) == node``."""
    if isinstance(node, Or):
        return " or ".join(_child(item, Or) for item in node.items)
    if isinstance(node, And):
        return " and ".join(_child(item, And) for item in node.items)
    if isinstance(node, Not):
        return f"not {_child(node.item, Not)}"
    if isinstance(node, Compare):
        if _is_truth_test(node):
            return _operand(node.left)
        return f"{_operand(node.left)} {node.op} {_operand(node.right)}"
    if isinstance(node, In):
        return f"{_operand(node.left)} in [{', '.join(_operand(v) for v in node.values)}]"
    if isinstance(node, Contains):
        return f"{_operand(node.left)} contains {_operand(node.right)}"
    if isinstance(node, StartsWith):
        return f"{_operand(node.left)} starts_with {_operand(node.right)}"
    if isinstance(node, Exists):
        return f"exists({_operand(node.path)})"
    if isinstance(node, IsNull):
        return f"{_operand(node.path)} is {'not ' if node.negated else ''}null"
    if isinstance(node, InSegment):
        return f"in_segment({quote(node.name)})"
    return _operand(node)
