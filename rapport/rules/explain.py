"""Why a rule holds or not for one profile: the rule tree with each node's value.

Each node of the tree is ``{"rule": text, "value": bool, ...}``; ``and``/``or``/``not`` carry their
``children``; comparisons carry their operands' values and a ``reason`` a marketer can read, e.g.
``count("Order Completed", within=30d) = 0, needs >= 1``. A missing value shows as ``null``.
"""

from __future__ import annotations

from rapport.rules.ast import (
    And,
    Compare,
    Contains,
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
from rapport.rules.evaluate import _MISSING, EvalContext, _value, evaluate
from rapport.rules.printer import to_text
from rapport.types import Json, JsonObject


def _shown(node: Operand, ctx: EvalContext) -> Json:
    value = _value(node, ctx)
    if value is _MISSING:
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | dict):
        return value
    ms = getattr(value, "ms", None)
    return ms if isinstance(ms, int | float) else str(value)


def _text(value: Json) -> str:
    return "missing" if value is None else to_text_value(value)


def to_text_value(value: Json) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    return str(value)


def explain(node: Node, ctx: EvalContext) -> JsonObject:
    """The tree of ``node`` evaluated against ``ctx``."""
    out: JsonObject = {"rule": to_text(node), "value": evaluate(node, ctx)}
    if isinstance(node, And | Or):
        out["children"] = [explain(item, ctx) for item in node.items]
    elif isinstance(node, Not):
        out["children"] = [explain(node.item, ctx)]
    elif isinstance(node, Compare):
        left, right = _shown(node.left, ctx), _shown(node.right, ctx)
        out["left"], out["right"] = left, right
        out["reason"] = f"{to_text(node.left)} = {_text(left)}, needs {node.op} {to_text(node.right)}"
    elif isinstance(node, In):
        left = _shown(node.left, ctx)
        out["left"] = left
        out["reason"] = f"{to_text(node.left)} = {_text(left)}, needs one of " + ", ".join(
            to_text(v) for v in node.values)
    elif isinstance(node, Contains | StartsWith):
        left, right = _shown(node.left, ctx), _shown(node.right, ctx)
        out["left"], out["right"] = left, right
        verb = "to contain" if isinstance(node, Contains) else "to start with"
        out["reason"] = f"{to_text(node.left)} = {_text(left)}, needs {verb} {_text(right)}"
    elif isinstance(node, Exists | IsNull):
        value = _shown(node.path, ctx)
        out["path_value"] = value
        want = "present" if isinstance(node, Exists) or node.negated else "missing"
        out["reason"] = f"{_path(node.path)} = {_text(value)}, needs it {want}"
    elif isinstance(node, InSegment):
        out["reason"] = f"{'member' if out['value'] else 'not a member'} of {node.name!r}"
    return out


def _path(path: Path) -> str:
    return ".".join((path.root, *path.parts))
