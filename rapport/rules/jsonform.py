"""The stable JSON form of a rule for the API: ``{"type": ..., ...}`` objects, one per AST node.

Boolean nodes: ``and``/``or`` (``items``), ``not`` (``item``), ``compare`` (``op``, ``left``,
``right``), ``in`` (``left``, ``values``), ``contains``/``starts_with`` (``left``, ``right``),
``exists`` (``path``), ``is_null`` (``path``, ``negated``), ``in_segment`` (``name``).
Operands: ``path`` (``root``, ``parts``), ``const`` (``value``), ``duration`` and ``date``
(``ms``, ``text``), ``event_fn`` (``fn``, ``event``, ``property``, ``within_ms``, ``where``).
``from_json`` accepts exactly what the text form can express, so every accepted rule prints.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn, cast

from rapport.errors import ValidationError
from rapport.rules.ast import (
    COMPARE_OPS,
    FUNCTIONS,
    PROPERTY_FUNCTIONS,
    ROOTS,
    And,
    Compare,
    CompareOp,
    Const,
    Contains,
    DateConst,
    DurationConst,
    EventFn,
    Exists,
    FnName,
    In,
    InSegment,
    IsNull,
    Literal_,
    Node,
    Not,
    Operand,
    Or,
    Path,
    Root,
    StartsWith,
)
from rapport.rules.dates import MAX_MS, MIN_MS
from rapport.types import SECOND

_NODE_TYPES = (
    "and",
    "compare",
    "contains",
    "exists",
    "in",
    "in_segment",
    "is_null",
    "not",
    "or",
    "starts_with",
)
_OPERAND_TYPES = ("const", "date", "duration", "event_fn", "path")
_LITERAL_TYPES = ("const", "date", "duration")


def to_json(node: Node | Operand) -> dict[str, Any]:
    """The JSON form of ``node``; ``from_json(to_json(node)) == node``."""
    match node:
        case And(items) | Or(items):
            return {"type": "and" if isinstance(node, And) else "or", "items": [to_json(i) for i in items]}
        case Not(item):
            return {"type": "not", "item": to_json(item)}
        case Compare(op, left, right):
            return {"type": "compare", "op": op, "left": to_json(left), "right": to_json(right)}
        case In(left, values):
            return {"type": "in", "left": to_json(left), "values": [to_json(v) for v in values]}
        case Contains(left, right) | StartsWith(left, right):
            kind = "contains" if isinstance(node, Contains) else "starts_with"
            return {"type": kind, "left": to_json(left), "right": to_json(right)}
        case Exists(path):
            return {"type": "exists", "path": to_json(path)}
        case IsNull(path, negated):
            return {"type": "is_null", "path": to_json(path), "negated": negated}
        case InSegment(name):
            return {"type": "in_segment", "name": name}
        case Path(root, parts):
            return {"type": "path", "root": root, "parts": list(parts)}
        case Const(value):
            return {"type": "const", "value": value}
        case DurationConst(ms, text) | DateConst(ms, text):
            return {"type": "duration" if isinstance(node, DurationConst) else "date", "ms": ms, "text": text}
        case EventFn(fn, event, prop, within, where):
            return {
                "type": "event_fn",
                "fn": fn,
                "event": event,
                "property": prop,
                "within_ms": within,
                "where": None if where is None else to_json(where),
            }
    raise TypeError(f"not a rule node: {node!r}")


def from_json(obj: object) -> Node:
    """The rule whose JSON form is ``obj``; raises ``ValidationError`` naming the bad field."""
    return _Reader(in_where=False).node(obj, "$")


def _fail(at: str, problem: str) -> NoReturn:
    raise ValidationError(
        f"invalid rule at {at}: {problem}", code="invalid_rule", details=[{"field": at, "problem": problem}]
    )


def _options(names: tuple[str, ...]) -> str:
    return ", ".join(repr(n) for n in sorted(names))


class _Reader:
    def __init__(self, in_where: bool) -> None:
        self.in_where = in_where

    def field(self, obj: dict[str, Any], key: str, at: str, kind: type | tuple[type, ...]) -> Any:
        if key not in obj:
            _fail(f"{at}.{key}", "missing")
        value = obj[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            _fail(f"{at}.{key}", f"expected {names}, got {value!r}")
        return value

    def typed(self, obj: object, at: str, allowed: tuple[str, ...]) -> tuple[dict[str, Any], str]:
        if not isinstance(obj, dict):
            _fail(at, f"expected an object with a 'type', got {obj!r}")
        kind = self.field(obj, "type", at, str)
        if kind not in allowed:
            _fail(f"{at}.type", f"unknown type {kind!r}; expected one of {_options(allowed)}")
        return obj, kind

    def node(self, raw: object, at: str) -> Node:
        obj, kind = self.typed(raw, at, _NODE_TYPES)
        if kind in ("and", "or"):
            items = self.field(obj, "items", at, list)
            if len(items) < 2:
                _fail(f"{at}.items", f"expected at least two items, got {len(items)}")
            nodes = tuple(self.node(item, f"{at}.items[{i}]") for i, item in enumerate(items))
            return And(nodes) if kind == "and" else Or(nodes)
        if kind == "not":
            return Not(self.node(obj.get("item"), f"{at}.item"))
        if kind == "in_segment":
            if self.in_where:
                _fail(at, "in_segment cannot be used inside where")
            return InSegment(self.field(obj, "name", at, str))
        if kind in ("exists", "is_null"):
            path = self.operand(obj.get("path"), f"{at}.path", ("path",))
            assert isinstance(path, Path)
            return Exists(path) if kind == "exists" else IsNull(path, self.field(obj, "negated", at, bool))
        left = self.operand(obj.get("left"), f"{at}.left", _OPERAND_TYPES)
        if kind == "in":
            values = self.field(obj, "values", at, list)
            return In(left, tuple(self.literal(v, f"{at}.values[{i}]") for i, v in enumerate(values)))
        right = self.operand(obj.get("right"), f"{at}.right", _OPERAND_TYPES)
        if kind == "contains":
            return Contains(left, right)
        if kind == "starts_with":
            return StartsWith(left, right)
        op = self.field(obj, "op", at, str)
        if op not in COMPARE_OPS:
            _fail(f"{at}.op", f"unknown operator {op!r}; expected one of {_options(COMPARE_OPS)}")
        return Compare(cast(CompareOp, op), left, right)

    def literal(self, raw: object, at: str) -> Literal_:
        value = self.operand(raw, at, _LITERAL_TYPES)
        assert isinstance(value, Const | DurationConst | DateConst)
        return value

    def operand(self, raw: object, at: str, allowed: tuple[str, ...]) -> Operand:
        obj, kind = self.typed(raw, at, allowed)
        if kind == "path":
            root = self.field(obj, "root", at, str)
            if root not in ROOTS:
                _fail(f"{at}.root", f"unknown path root {root!r}; expected one of {_options(ROOTS)}")
            if self.in_where and root != "event":
                _fail(f"{at}.root", f"expected 'event' inside where, got {root!r}")
            parts = self.field(obj, "parts", at, list)
            if not parts or not all(isinstance(p, str) for p in parts):
                _fail(f"{at}.parts", f"expected a non-empty list of strings, got {parts!r}")
            return Path(cast(Root, root), tuple(parts))
        if kind == "const":
            value = self.field(obj, "value", at, (str, int, float, bool, type(None)))
            if isinstance(value, float) and not math.isfinite(value):
                _fail(f"{at}.value", f"expected a finite number, got {value!r}")
            return Const(value)
        if kind in ("duration", "date"):
            ms = self.field(obj, "ms", at, int)
            text = obj.get("text", "")
            if not isinstance(text, str):
                _fail(f"{at}.text", f"expected str, got {text!r}")
            if kind == "date":
                if not MIN_MS <= ms <= MAX_MS:
                    _fail(f"{at}.ms", f"expected an instant in the years 1 to 9999, got {ms}")
                return DateConst(ms, text)
            if ms <= 0 or ms % SECOND:
                _fail(f"{at}.ms", f"expected a positive whole number of seconds in ms, got {ms}")
            return DurationConst(ms, text)
        return self.event_fn(obj, at)

    def event_fn(self, obj: dict[str, Any], at: str) -> EventFn:
        if self.in_where:
            _fail(at, "event functions cannot be used inside where")
        fn = self.field(obj, "fn", at, str)
        if fn not in FUNCTIONS:
            _fail(f"{at}.fn", f"unknown function {fn!r}; expected one of {_options(FUNCTIONS)}")
        event = self.field(obj, "event", at, str)
        prop = obj.get("property")
        if fn in PROPERTY_FUNCTIONS and not isinstance(prop, str):
            _fail(f"{at}.property", f"{fn} needs the name of the property to aggregate, got {prop!r}")
        if fn not in PROPERTY_FUNCTIONS and prop is not None:
            _fail(f"{at}.property", f"{fn} takes no property, got {prop!r}")
        within = obj.get("within_ms")
        if within is not None and (type(within) is not int or within <= 0 or within % SECOND):
            _fail(
                f"{at}.within_ms",
                f"expected null or a positive whole number of seconds in ms, got {within!r}",
            )
        raw_where = obj.get("where")
        where = None if raw_where is None else _Reader(in_where=True).node(raw_where, f"{at}.where")
        return EventFn(cast(FnName, fn), event, prop, within, where)
