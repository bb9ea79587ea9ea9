"""Why a rule holds or not for one profile: the rule tree with each node's value.

Each node of the tree is ``{"rule": text, "value": bool, ...}``; ``and``/``or``/``not`` carry their
``children``; comparisons carry their operands' values and a ``reason`` a marketer can read, e.g.
``count("Order Completed", within=30d) = 0, needs >= 1``. A missing value shows as ``null``.
"""

from __future__ import annotations

import json

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
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def explain(node: Node, ctx: EvalContext, negated: bool = False) -> JsonObject:
    """The tree of ``node`` evaluated against ``ctx``. Each leaf's ``reason`` says what the whole rule
    needs of it: under an odd number of ``not`` that is the opposite (``needs not >= 1``, ``needs it
    missing``), and such nodes carry ``"negated": true``."""
    out: JsonObject = {"rule": to_text(node), "value": evaluate(node, ctx)}
    if negated:
        out["negated"] = True
    if isinstance(node, And | Or):
        out["children"] = [explain(item, ctx, negated) for item in node.items]
    elif isinstance(node, Not):
        out["children"] = [explain(node.item, ctx, not negated)]
    elif isinstance(node, Compare):
        left, right = _shown(node.left, ctx), _shown(node.right, ctx)
        out["left"], out["right"] = left, right
        out["reason"] = f"{to_text(node.left)} = {_text(left)}, {_needs(negated)} {node.op} {to_text(node.right)}"
    elif isinstance(node, In):
        left = _shown(node.left, ctx)
        out["left"] = left
        out["reason"] = f"{to_text(node.left)} = {_text(left)}, {_needs(negated)} one of " + ", ".join(
            to_text(v) for v in node.values)
    elif isinstance(node, Contains | StartsWith):
        left, right = _shown(node.left, ctx), _shown(node.right, ctx)
        out["left"], out["right"] = left, right
        verb = "to contain" if isinstance(node, Contains) else "to start with"
        out["reason"] = f"{to_text(node.left)} = {_text(left)}, {_needs(negated)} {verb} {_text(right)}"
    elif isinstance(node, Exists | IsNull):
        value = _shown(node.path, ctx)
        out["path_value"] = value
        present = isinstance(node, Exists) or node.negated
        want = "present" if present != negated else "missing"
        out["reason"] = f"{_path(node.path)} = {_text(value)}, needs it {want}"
    elif isinstance(node, InSegment):
        out["reason"] = f"{'member' if out['value'] else 'not a member'} of {node.name!r}"
    return out


def _needs(negated: bool) -> str:
    return "needs not" if negated else "needs"


def _path(path: Path) -> str:
    return ".".join((path.root, *path.parts))
