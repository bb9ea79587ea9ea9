"""The rule language of segments, journeys, send-gate rules, content variants and targeting.

``parse`` turns rule text into an AST of frozen nodes, ``to_text`` prints it back, ``to_json`` and
``from_json`` carry it through the API, and ``evaluate`` tests one profile against it.
"""

from __future__ import annotations

from rapport.rules.analysis import event_functions, paths, segments
from rapport.rules.ast import (
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
    Span,
    StartsWith,
)
from rapport.rules.errors import RuleSyntaxError
from rapport.rules.evaluate import DictContext, EvalContext, evaluate, evaluate_where
from rapport.rules.jsonform import from_json, to_json
from rapport.rules.parser import parse
from rapport.rules.printer import to_text

__all__ = [
    "And",
    "Compare",
    "Const",
    "Contains",
    "DateConst",
    "DictContext",
    "DurationConst",
    "EvalContext",
    "EventFn",
    "Exists",
    "In",
    "InSegment",
    "IsNull",
    "Literal_",
    "Node",
    "Not",
    "Operand",
    "Or",
    "Path",
    "RuleSyntaxError",
    "Span",
    "StartsWith",
    "evaluate",
    "evaluate_where",
    "event_functions",
    "from_json",
    "parse",
    "paths",
    "segments",
    "to_json",
    "to_text",
]
