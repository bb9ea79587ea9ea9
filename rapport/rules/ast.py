"""The rule AST: frozen nodes shared by the parser, printer, JSON form, evaluator and SQL compiler.

Equality and hashing ignore source positions (``span``), so a parsed rule equals the same rule
built by hand. ``Const`` equality also looks at the value's type: ``1``, ``1.0`` and ``true`` are
different constants because they evaluate differently (a bool is not a number).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, TypeAlias, get_args

from rapport.errors import ValidationError
from rapport.types import Millis

Root = Literal["traits", "computed", "consent", "context", "event", "message"]
CompareOp = Literal["==", "!=", ">", ">=", "<", "<="]
FnName = Literal["count", "sum", "avg", "min", "max", "last_seen", "first_seen", "days_since"]
ConstValue: TypeAlias = str | int | float | bool | None

ROOTS: tuple[Root, ...] = ("traits", "computed", "consent", "context", "event")
"""The roots a rule may read wherever rules are written."""
MESSAGE_ROOT: Root = "message"
"""``message.<property>``: the message the send gate is deciding about (its journey's entry event), which
only a ``SuppressionRule`` can read, anywhere in its rule and inside ``where=`` (``parse(text, message=True)``)."""
COMPARE_OPS: tuple[CompareOp, ...] = get_args(CompareOp)
FUNCTIONS: tuple[FnName, ...] = get_args(FnName)
PROPERTY_FUNCTIONS: frozenset[FnName] = frozenset({"sum", "avg", "min", "max"})
"""Event functions that aggregate one event property, named as their second argument."""


@dataclass(frozen=True, slots=True)
class Span:
    """Where a node came from in the rule text: offsets ``[start, end)`` and 1-based line and column."""

    start: int
    end: int
    line: int
    col: int


NO_SPAN = Span(0, 0, 0, 0)
"""The span of a node that was not parsed from text."""


@dataclass(frozen=True, slots=True)
class Path:
    """A field read: ``traits.address.city`` is ``Path("traits", ("address", "city"))``."""

    root: Root
    parts: tuple[str, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True, eq=False)
class Const:
    """A string, number, boolean or ``null`` literal."""

    value: ConstValue
    span: Span = field(default=NO_SPAN, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.value, float) and not math.isfinite(self.value):
            raise ValidationError(f"invalid constant {self.value!r}; a rule number must be finite", code="invalid_rule")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Const):
            return NotImplemented
        return type(self.value) is type(other.value) and self.value == other.value

    def __hash__(self) -> int:
        return hash((type(self.value).__name__, self.value))


@dataclass(frozen=True, slots=True)
class DurationConst:
    """A duration literal such as ``30d``; it compares as its length in milliseconds."""

    ms: Millis
    text: str = field(default="", compare=False)
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class DateConst:
    """An unquoted ISO date or UTC instant such as ``2026-01-31`` or ``2026-01-31T10:00:00Z``."""

    ms: Millis
    text: str = field(default="", compare=False)
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class EventFn:
    """An aggregate over the profile's events named ``event``, optionally windowed and filtered.

    ``property`` is set exactly for ``sum``, ``avg``, ``min`` and ``max``. ``where`` is a rule over
    the event's properties, whose paths all have the root ``event``.
    """

    fn: FnName
    event: str
    property: str | None = None
    within_ms: Millis | None = None
    where: Node | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Not:
    item: Node
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Compare:
    """``left op right``; a bare path used as a condition is ``Compare("==", path, Const(True))``."""

    op: CompareOp
    left: Operand
    right: Operand
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class In:
    """``left in [v1, v2, ...]``."""

    left: Operand
    values: tuple[Literal_, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Contains:
    """``left contains right``: substring of a string, or member of a list."""

    left: Operand
    right: Operand
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class StartsWith:
    left: Operand
    right: Operand
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Exists:
    """``exists(path)``: the field is present and not null."""

    path: Path
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class IsNull:
    """``path is null`` (missing or null), or ``path is not null`` when ``negated``."""

    path: Path
    negated: bool = False
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class InSegment:
    """``in_segment("name")``: the profile is currently a member of the segment."""

    name: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Literal_: TypeAlias = Const | DurationConst | DateConst
Operand: TypeAlias = Path | Const | DurationConst | DateConst | EventFn
Node: TypeAlias = And | Or | Not | Compare | In | Contains | StartsWith | Exists | IsNull | InSegment

LITERAL_TYPES = (Const, DurationConst, DateConst)
OPERAND_TYPES = (Path, Const, DurationConst, DateConst, EventFn)
NODE_TYPES = (And, Or, Not, Compare, In, Contains, StartsWith, Exists, IsNull, InSegment)
