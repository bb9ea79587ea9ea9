"""Compiles a segment rule to one SQL query selecting the live profiles it matches at an instant.

The query must select exactly the profiles ``rapport.rules.evaluate`` accepts over the same stored
data (``segments.stored``); a property test holds both engines to it on SQLite and PostgreSQL. It
reads what ``rapport.profiles`` keeps: ``trait_values`` for ``traits.*`` (one row per value, typed
as the evaluator sees it), ``buckets`` and ``bucket_values`` for ``computed.*`` and event functions
(windows relative to the instant), ``consent_ledger`` for ``consent.*`` and ``segment_history`` for
``in_segment``.

Every operand compiles to a typed value: SQL for whether it is present, its kind (number, string,
bool, array, object, sealed), its number, its text and the instant it names. A comparison then
spells out the evaluator's rules case by case, so that no comparison is ever NULL and ``not`` keeps
two-valued logic. Values are bound parameters; only generated aliases and constant SQL are written
into the text. Where SQL cannot see what the evaluator sees (whether a string held as JSON in a
bucket names a date), the rule is refused (``segments.check``) rather than answered differently.
Known approximations: sums of floats add in storage order, so engines may differ in the last bit
of a sum that is not exact; timestamps are taken to lie between the years 1000 and 9999.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from rapport.consent.model import NECESSARY
from rapport.errors import ValidationError
from rapport.profiles.computed import TraitDef
from rapport.profiles.values import path_key
from rapport.rules import (
    And,
    Compare,
    Const,
    Contains,
    DateConst,
    DictContext,
    DurationConst,
    EventFn,
    Exists,
    In,
    InSegment,
    Node,
    Not,
    Operand,
    Or,
    StartsWith,
    evaluate,
    to_text,
)
from rapport.rules.dates import parse_iso
from rapport.rules.evaluate import real
from rapport.segments.check import ensure_segment_rule
from rapport.segments.functions import series_key
from rapport.storage.base import Dialect
from rapport.types import DAY, Millis
from rapport.workspaces.runtime import WorkspaceRuntime


@dataclass(frozen=True, slots=True)
class Sql:
    """A fragment of SQL text and the values bound to its ``?`` placeholders, in order."""

    text: str
    params: tuple[object, ...] = ()


TRUE = Sql("TRUE")
FALSE = Sql("FALSE")


def cat(*parts: Sql | str) -> Sql:
    """The fragments (and constant SQL strings) one after the other."""
    text: list[str] = []
    params: list[object] = []
    for part in parts:
        if isinstance(part, str):
            text.append(part)
        else:
            text.append(part.text)
            params.extend(part.params)
    return Sql("".join(text), tuple(params))


def join(separator: str, parts: Iterable[Sql]) -> Sql:
    pieces: list[Sql | str] = []
    for part in parts:
        pieces += [separator, part] if pieces else [part]
    return cat(*pieces)


def bind(value: object) -> Sql:
    return Sql("?", (value,))


def all_of(items: Iterable[Sql | None]) -> Sql:
    """``a AND b ...``; ``None`` items are true."""
    kept = [item for item in items if item is not None and item != TRUE]
    if FALSE in kept:
        return FALSE
    if not kept:
        return TRUE
    return kept[0] if len(kept) == 1 else cat("(", join(" AND ", kept), ")")


def any_of(items: Iterable[Sql]) -> Sql:
    kept = [item for item in items if item != FALSE]
    if TRUE in kept:
        return TRUE
    if not kept:
        return FALSE
    return kept[0] if len(kept) == 1 else cat("(", join(" OR ", kept), ")")


def negate(item: Sql) -> Sql:
    if item == TRUE:
        return FALSE
    if item == FALSE:
        return TRUE
    return cat("NOT ", item) if _enclosed(item.text) else cat("NOT (", item, ")")


def _enclosed(text: str) -> bool:
    """Whether ``text`` is one parenthesized expression (parentheses in quotes aside)."""
    depth, quote = 0, ""
    for i, c in enumerate(text):
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0 and i < len(text) - 1:
                return False
    return text.startswith("(") and depth == 0


def truth(value: bool) -> Sql:
    return TRUE if value else FALSE


_SQL_OPS = {"==": "=", "!=": "<>", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
_ALL_KINDS = frozenset({"number", "string", "bool", "array", "object", "sealed"})
_COMPARABLE = ("number", "string", "bool")


@dataclass(frozen=True, slots=True)
class Value:
    """An operand as SQL. ``present`` is true when it has a value (``None``: always; ``FALSE``: never).

    ``kinds`` are the kinds it can have; ``kind`` is SQL naming its kind when there are several.
    ``num`` holds numbers and booleans (0/1), ``txt`` strings, ``instant`` the epoch milliseconds it
    names in a date comparison (NULL when it names none). ``dated`` marks a date literal, which
    makes a comparison a date comparison; ``instant`` is ``None`` when the value never names an
    instant, and ``undated`` says SQL cannot tell. ``elements`` builds ``EXISTS`` over the elements of
    a list value that satisfy a condition.
    """

    kinds: frozenset[str]
    present: Sql | None = None
    kind: Sql | None = None
    num: Sql | None = None
    txt: Sql | None = None
    instant: Sql | None = None
    instant_nullable: bool = True
    dated: bool = False
    undated: str | None = None
    """Why SQL cannot tell the instant this value names (a rule comparing it with a date is refused)."""
    elements: Callable[[Callable[[Value], Sql]], Sql] | None = field(default=None, compare=False)

    @property
    def never(self) -> bool:
        return self.present == FALSE

    def is_kind(self, kind: str) -> Sql | None:
        """SQL true when the value has ``kind`` (``None`` when it always does)."""
        if kind not in self.kinds:
            return FALSE
        if self.kinds == {kind}:
            return None
        assert self.kind is not None, "a value of several kinds names its kind"
        return cat(self.kind, f" = '{kind}'")


MISSING = Value(frozenset(), present=FALSE)


def _number(num: Sql, present: Sql | None = None) -> Value:
    return Value(frozenset({"number"}), present, num=num, instant=num, instant_nullable=False)


class _Compiler:
    def __init__(self, rt: WorkspaceRuntime, dialect: Dialect, at: Millis) -> None:
        self.rt, self.at = rt, at
        self.pg = dialect.name == "postgres"
        self.joins: list[Sql | str] = []
        """Joins in order; a ``str`` is a series whose totals join ``finish`` builds."""
        self.aliases: dict[tuple[object, ...], str] = {}
        self.windows: dict[str, list[tuple[str, Millis | None]]] = {}
        """Per series, the alias of each window of its totals, in order of first use."""
        self.counter = 0

    # --- dialect -------------------------------------------------------------------------------

    def double(self, expr: Sql | str) -> Sql:
        return cat("CAST(", expr, " AS DOUBLE PRECISION)" if self.pg else " AS REAL)")

    def at_param(self) -> Sql:
        """The instant as an integer parameter, typed for PostgreSQL arithmetic."""
        return cat("CAST(", bind(self.at), " AS BIGINT)") if self.pg else bind(self.at)

    def position(self, text: Sql, part: Sql) -> Sql:
        return cat("strpos(" if self.pg else "instr(", text, ", ", part, ")")

    def collate(self, text: Sql) -> Sql:
        return cat("(", text, ') COLLATE "C"') if self.pg else text

    def iso(self, ts: str) -> Sql:
        """The ISO text ``rapport.clock.to_iso`` gives epoch milliseconds ``ts``."""
        ms = f"(({ts} % 1000 + 1000) % 1000)"
        seconds = f"(({ts} - {ms}) / 1000)"
        if self.pg:
            return Sql(f"to_char(to_timestamp({seconds}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
                       f" || '.' || lpad(CAST({ms} AS TEXT), 3, '0') || 'Z'")
        return Sql(f"strftime('%Y-%m-%dT%H:%M:%S', {seconds}, 'unixepoch') || printf('.%03dZ', {ms})")

    def json_scalar(self, expr: str) -> tuple[Sql, Sql, Sql]:
        """(kind, num, txt) of a JSON value; the kind is NULL for JSON null (SQLite: JSON text;
        PostgreSQL: a ``jsonb`` expression)."""
        if self.pg:
            kind = (f"CASE jsonb_typeof({expr}) WHEN 'number' THEN 'number' WHEN 'string' THEN 'string'"
                    f" WHEN 'boolean' THEN 'bool' WHEN 'null' THEN NULL ELSE jsonb_typeof({expr}) END")
            num = (f"CASE jsonb_typeof({expr}) WHEN 'number' THEN CAST({expr} #>> '{{}}' AS DOUBLE PRECISION)"
                   f" WHEN 'boolean' THEN CASE WHEN {expr} #>> '{{}}' = 'true' THEN 1.0 ELSE 0.0 END END")
            return Sql(kind), Sql(num), Sql(f"{expr} #>> '{{}}'")
        kind = (f"CASE json_type({expr}) WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number'"
                f" WHEN 'text' THEN 'string' WHEN 'true' THEN 'bool' WHEN 'false' THEN 'bool'"
                f" WHEN 'null' THEN NULL ELSE json_type({expr}) END")
        return Sql(kind), Sql(f"CAST(json_extract({expr}, '$') AS REAL)"), Sql(f"json_extract({expr}, '$')")

    # --- joins ---------------------------------------------------------------------------------

    def alias(self, key: tuple[object, ...], prefix: str, make: Callable[[str], Sql]) -> str:
        """The alias of the join for ``key``, adding it (built by ``make(alias)``) on first use."""
        found = self.aliases.get(key)
        if found is None:
            self.counter += 1
            found = self.aliases[key] = f"{prefix}{self.counter}"
            self.joins.append(make(found))
        return found

    def window(self, column: str, window_ms: Millis | None) -> Sql:
        """Buckets counting at the instant (``rapport.profiles.computed.in_window``)."""
        bounds = cat(f"{column} <= ", bind(self.at))
        if window_ms is not None:
            bounds = cat(bounds, f" AND {column} > ", bind(self.at - window_ms))
        return bounds

    def totals(self, series: str, window_ms: Millis | None) -> str:
        """Alias of the per-profile aggregates of a series' buckets in a window.

        The join is built by ``finish`` once every condition is compiled, reading only the aggregates
        the conditions use; all windows of one series share one pass over its buckets.
        """
        key = ("totals", series, window_ms)
        found = self.aliases.get(key)
        if found is None:
            found = self.aliases[key] = self.fresh("w")
            windows = self.windows.setdefault(series, [])
            if not windows:
                self.joins.append(series)
            windows.append((found, window_ms))
        return found

    def finish(self, condition: Sql) -> tuple[list[Sql], Sql]:
        """The joins, and ``condition`` reading the totals of series with several windows from their
        shared join (``w3.n`` becomes ``w1.w3_n``)."""
        used: dict[str, list[str]] = {}
        for alias, column in _REFERENCE.findall(condition.text):
            names = used.setdefault(alias, [])
            if column not in names:
                names.append(column)
        renamed: dict[str, str] = {}
        joins: list[Sql] = []
        for item in self.joins:
            if isinstance(item, Sql):
                joins.append(item)
                continue
            windows = self.windows[item]
            if len(windows) > 1:
                renamed.update((alias, windows[0][0]) for alias, _ in windows)
            joins.append(self.series_join(item, windows, used))
        if renamed:
            text = _REFERENCE.sub(lambda m: _renamed(m, renamed), condition.text)
            condition = Sql(text, condition.params)
        return joins, condition

    def only_series(self, condition: Sql) -> str | None:
        """The one series whose totals are all ``condition`` reads (nothing of the profile else), if so.

        A condition that reads no totals at all (compiled to a constant) has none: the pass decides
        rules with at least one aggregate, which is what makes the same expression over no rows give
        one row, the rule's value for a profile without events."""
        if (len(self.windows) != 1 or any(isinstance(j, Sql) for j in self.joins)
                or _PROFILE.search(condition.text) or not _REFERENCE.search(condition.text)):
            return None
        return next(iter(self.windows))

    def inline(self, condition: Sql, columns: dict[tuple[str, Millis | None], str]) -> Sql:
        """``condition`` reading each window's totals (``w2.n``) from a column of the series' pass
        (``g.a1``); ``columns`` names the pass's aggregates by (aggregate, window) and gains the new ones."""
        window_of = {alias: w for windows in self.windows.values() for alias, w in windows}

        def column(match: re.Match[str]) -> str:
            key = (match.group(2), window_of[match.group(1)])
            name = columns.setdefault(key, f"a{len(columns) + 1}")
            return f"g.{name}"

        return Sql(_REFERENCE.sub(column, condition.text), condition.params)

    def series_pass(self, series: str, bits: Sql, columns: dict[tuple[str, Millis | None], str],
                    scope: list[Sql]) -> tuple[Sql, Sql]:
        """The pass over ``series``' buckets up to the instant: per profile with buckets in it, ``bits``
        less what they are for a profile with none; and that value, ``bits`` over the same aggregates
        of no rows (one row of NULLs)."""
        aggregates = [self.aggregate_in(name, window_ms, alias) for (name, window_ms), alias in columns.items()]
        where = all_of([cat("workspace_id = ", bind(self.rt.id)), cat("series = ", bind(series)),
                        self.window("bucket", _widest(w for _, w in columns)), *scope])
        grouped = cat("SELECT profile_id", *aggregates, " FROM buckets WHERE ", where, " GROUP BY profile_id")
        default = cat("(SELECT ", bits, " FROM (SELECT 0 AS none", *aggregates, " FROM buckets WHERE 1 = 0) g)")
        return cat("SELECT profile_id, ", bits, " - ", default, " AS delta FROM (", grouped, ") g"), default

    def series_join(self, series: str, windows: list[tuple[str, Millis | None]],
                    used: dict[str, list[str]]) -> Sql:
        """One pass over a series' buckets up to the instant, with the aggregates of every window read."""
        first = windows[0][0]
        source = cat(" FROM buckets WHERE workspace_id = ", bind(self.rt.id), " AND series = ", bind(series), " AND ")
        if len(windows) == 1:
            names = [c for c in _AGGREGATES if c in used.get(first, ())] or ["n"]
            columns = ", ".join(f"{_AGGREGATES[c][0]}({_AGGREGATES[c][1]}) AS {c}" for c in names)
            return cat(f"LEFT JOIN (SELECT profile_id, {columns}", source, self.window("bucket", windows[0][1]),
                       f" GROUP BY profile_id) {first} ON {first}.profile_id = p.id")
        parts = [self.aggregate_in(c, window_ms, f"{alias}_{c}") for alias, window_ms in windows
                 for c in [c for c in _AGGREGATES if c in used.get(alias, ())] or ["n"]]
        return cat("LEFT JOIN (SELECT profile_id", *parts, source,
                   self.window("bucket", _widest(w for _, w in windows)),
                   f" GROUP BY profile_id) {first} ON {first}.profile_id = p.id")

    def aggregate_in(self, name: str, window_ms: Millis | None, alias: str) -> Sql:
        """``, SUM(CASE WHEN bucket > ? THEN n END) AS alias``: aggregate ``name`` over the buckets of a
        window, in a pass that reads a wider one (all of them when ``window_ms`` is None)."""
        fn, column = _AGGREGATES[name]
        if window_ms is None:
            return Sql(f", {fn}({column}) AS {alias}")
        return cat(f", {fn}(CASE WHEN bucket > ", bind(self.at - window_ms), f" THEN {column} END) AS {alias}")

    def distinct(self, series: str, window_ms: Millis | None) -> str:
        return self.alias(("distinct", series, window_ms), "v", lambda a: cat(
            "LEFT JOIN (SELECT profile_id, COUNT(DISTINCT value) AS n FROM bucket_values WHERE workspace_id = ",
            bind(self.rt.id), " AND series = ", bind(series), " AND ", self.window("bucket", window_ms),
            f" GROUP BY profile_id) {a} ON {a}.profile_id = p.id"))

    def edge(self, series: str, window_ms: Millis | None, last: bool) -> str:
        """Alias of the value of the first or last event of a series in a window (JSON), typed."""
        end, order = ("last", "DESC") if last else ("first", "ASC")
        source = f"CAST({end}_val AS JSONB)" if self.pg else f"{end}_val"
        kind, num, txt = self.json_scalar("val")
        return self.alias(("edge", series, window_ms, last), "e", lambda a: cat(
            "LEFT JOIN (SELECT profile_id, ", kind, " AS kind, ", num, " AS num, ", txt, " AS txt, val FROM",
            f" (SELECT profile_id, {source} AS val, ROW_NUMBER() OVER (PARTITION BY profile_id"
            f" ORDER BY {end}_ts {order}, {end}_seq {order}) AS rn FROM buckets WHERE workspace_id = ",
            bind(self.rt.id), " AND series = ", bind(series), " AND ", self.window("bucket", window_ms),
            f") r WHERE rn = 1) {a} ON {a}.profile_id = p.id"))

    def trait(self, key: str) -> str:
        return self.alias(("trait", key), "t", lambda a: cat(
            f"LEFT JOIN trait_values {a} ON {a}.workspace_id = ", bind(self.rt.id),
            f" AND {a}.profile_id = p.id AND {a}.path = ", bind(key), f" AND {a}.elem = 0"))

    def ledger(self, purpose: str) -> str:
        """Alias of each profile's consent entry for ``purpose`` in effect at the instant."""
        return self.alias(("consent", purpose), "c", lambda a: cat(
            "LEFT JOIN (SELECT profile_id, state, expires_at FROM (SELECT profile_id, state, expires_at,"
            " ROW_NUMBER() OVER (PARTITION BY profile_id ORDER BY effective_at DESC, seq DESC) AS rn"
            " FROM consent_ledger WHERE workspace_id = ", bind(self.rt.id), " AND purpose = ", bind(purpose),
            " AND effective_at <= ", bind(self.at), f") l WHERE rn = 1) {a} ON {a}.profile_id = p.id"))

    def bit(self, i: int) -> Sql:
        """Bit ``i`` of a mask as an integer parameter."""
        return cat("CAST(", bind(1 << i), " AS BIGINT)") if self.pg else bind(1 << i)

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    # --- operands ------------------------------------------------------------------------------

    def literal(self, node: Const | DurationConst | DateConst) -> Value:
        if isinstance(node, DateConst):
            return Value(frozenset(), instant=bind(real(node.ms)), instant_nullable=False, dated=True)
        if isinstance(node, DurationConst):
            return _number(bind(real(node.ms)))
        value = node.value
        if value is None:
            return MISSING
        if isinstance(value, bool):
            return Value(frozenset({"bool"}), num=bind(1.0 if value else 0.0))
        if isinstance(value, int | float):
            return _number(bind(real(value)))
        ms = parse_iso(value)
        return Value(frozenset({"string"}), txt=bind(value), instant=None if ms is None else bind(float(ms)),
                     instant_nullable=False)

    def value(self, node: Operand) -> Value:
        if isinstance(node, Const | DurationConst | DateConst):
            return self.literal(node)
        if isinstance(node, EventFn):
            return self.function(node)
        if node.root == "traits":
            return self.trait_value(node.parts)
        if node.root == "computed":
            defn = self.rt.traits.get(node.parts[0]) if len(node.parts) == 1 else None
            return MISSING if defn is None else self.computed(defn, to_text(node))
        if node.root == "consent":
            return self.consent(node.parts)
        raise AssertionError(f"not a segment rule path: {node.root}")  # ensure_segment_rule refused it

    def trait_value(self, parts: tuple[str, ...]) -> Value:
        if not parts:
            return MISSING
        key = path_key(parts)
        t = self.trait(key)

        def elements(test: Callable[[Value], Sql]) -> Sql:
            e = self.fresh("l")
            element = Value(_ALL_KINDS, kind=Sql(f"{e}.kind"), num=Sql(f"{e}.num"), txt=Sql(f"{e}.txt"),
                            instant=Sql(f"{e}.instant"))
            return cat(f"EXISTS (SELECT 1 FROM trait_values {e} WHERE {e}.workspace_id = ", bind(self.rt.id),
                       f" AND {e}.profile_id = p.id AND {e}.path = ", bind(key), f" AND {e}.elem > 0 AND ",
                       test(element), ")")

        return Value(_ALL_KINDS, present=Sql(f"{t}.kind IS NOT NULL"), kind=Sql(f"{t}.kind"), num=Sql(f"{t}.num"),
                     txt=Sql(f"{t}.txt"), instant=Sql(f"{t}.instant"), elements=elements)

    def computed(self, defn: TraitDef, shown: str) -> Value:
        series, window, agg = defn.series.id, defn.window_ms, defn.aggregate
        if agg == "distinct":
            return _number(self.double(f"COALESCE({self.distinct(series, window)}.n, 0)"))
        if agg == "ratio":
            assert defn.denominator is not None
            num, den = self.totals(series, window), self.totals(defn.denominator.id, window)
            ratio = cat(self.double(f"COALESCE({num}.n, 0)"), " / ", self.double(f"{den}.n"))
            return _number(ratio, Sql(f"COALESCE({den}.n, 0) > 0"))
        if agg in ("first", "last") and defn.series.prop is not None:
            e = self.edge(series, window, agg == "last")
            why = (f"{shown} is the {agg} value of the event property {defn.series.prop!r}, which may be of any "
                   "kind, and SQL cannot tell which of its strings are dates")
            return Value(_ALL_KINDS, present=Sql(f"{e}.kind IS NOT NULL"), kind=Sql(f"{e}.kind"),
                         num=Sql(f"{e}.num"), txt=Sql(f"{e}.txt"), undated=why, elements=self.json_elements(e))
        w = self.totals(series, window)
        if agg in ("first", "last"):
            ts = f"{w}.first_ts" if agg == "first" else f"{w}.last_ts"
            return Value(frozenset({"string"}), present=Sql(f"{ts} IS NOT NULL"), txt=self.iso(ts),
                         instant=self.double(ts), instant_nullable=False)
        if agg == "days_since":
            days = cat("(", self.at_param(), f" - {w}.last_bucket) / {DAY}")
            return _number(self.double(days), Sql(f"{w}.last_bucket IS NOT NULL"))
        return self.aggregate(agg, w)

    def aggregate(self, agg: str, w: str) -> Value:
        if agg == "count":
            return _number(self.double(f"COALESCE({w}.n, 0)"))
        if agg == "sum":
            return _number(self.double(f"COALESCE({w}.total, 0)"))
        if agg == "avg":
            return _number(cat(f"{w}.total / ", self.double(f"{w}.nn")), Sql(f"COALESCE({w}.nn, 0) > 0"))
        column = f"{w}.vmin" if agg == "min" else f"{w}.vmax"
        assert agg in ("min", "max"), agg
        return _number(Sql(column), Sql(f"{column} IS NOT NULL"))

    def json_elements(self, e: str) -> Callable[[Callable[[Value], Sql]], Sql]:
        """``EXISTS`` over the elements of the JSON list in edge join ``e`` (none when it is no list)."""

        def elements(test: Callable[[Value], Sql]) -> Sql:
            j = self.fresh("j")
            if self.pg:
                source = (f"jsonb_array_elements(CASE WHEN {e}.kind = 'array' THEN {e}.val"
                          f" ELSE CAST('[]' AS JSONB) END) AS {j}(v)")
                kind, num, txt = self.json_scalar(f"{j}.v")
            else:
                source = f"json_each(CASE WHEN {e}.kind = 'array' THEN {e}.val ELSE '[]' END) {j}"
                kind = Sql(f"CASE {j}.type WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number' WHEN 'text'"
                           f" THEN 'string' WHEN 'true' THEN 'bool' WHEN 'false' THEN 'bool' WHEN 'null' THEN NULL"
                           f" ELSE {j}.type END")
                num, txt = Sql(f"CAST({j}.value AS REAL)"), Sql(f"{j}.value")
            element = Value(_ALL_KINDS, present=cat(kind, " IS NOT NULL"), kind=kind, num=num, txt=txt,
                            undated="SQL cannot tell which strings of a JSON list are dates")
            return cat(f"EXISTS (SELECT 1 FROM {source} WHERE ", test(element), ")")

        return elements

    def consent(self, parts: tuple[str, ...]) -> Value:
        purpose = self.rt.catalog.purposes.get(parts[0]) if len(parts) == 1 else None
        if purpose is None:
            return MISSING
        if purpose.name == NECESSARY:
            return Value(frozenset({"bool"}), num=Sql("1"))
        c = self.ledger(purpose.name)
        otherwise = "0" if purpose.needs_consent else "1"
        allowed = cat(f"CASE WHEN {c}.state = 'granted' AND ({c}.expires_at IS NULL OR {c}.expires_at > ",
                      bind(self.at), f") THEN 1 WHEN {c}.state IS NULL OR {c}.state = 'granted' THEN {otherwise}"
                      " ELSE 0 END")
        return Value(frozenset({"bool"}), num=allowed)

    def function(self, fn: EventFn) -> Value:
        w = self.totals(series_key(fn).id, fn.within_ms)
        if fn.fn in ("last_seen", "first_seen"):
            ts = f"{w}.last_ts" if fn.fn == "last_seen" else f"{w}.first_ts"
            return _number(self.double(ts), Sql(f"{ts} IS NOT NULL"))
        if fn.fn == "days_since":
            elapsed = self.double(cat(self.at_param(), f" - {w}.last_ts"))
            return _number(cat(elapsed, f" / {DAY}"), Sql(f"{w}.last_ts IS NOT NULL"))
        return self.aggregate(fn.fn, w)

    # --- conditions ----------------------------------------------------------------------------

    def compare(self, op: str, a: Value, b: Value) -> Sql:
        if a.never or b.never:
            return FALSE
        other = truth(op == "!=")
        if a.dated or b.dated:
            for side in (a, b):
                if side.undated is not None:
                    raise ValidationError(f"cannot compare with a date: {side.undated}", code="invalid_rule")
            if a.instant is None or b.instant is None:
                body = other
            else:
                body = cat("(", a.instant, f" {_SQL_OPS[op]} ", b.instant, ")")
                if a.instant_nullable or b.instant_nullable:
                    body = cat("COALESCE(", body, ", ", other, ")")
            return all_of([a.present, b.present, body])
        cases: list[tuple[str, Sql]] = []
        for kind in _COMPARABLE:
            if kind not in a.kinds or kind not in b.kinds:
                continue
            if kind == "string":
                assert a.txt is not None and b.txt is not None
                test = cat("(", self.collate(a.txt), f" {_SQL_OPS[op]} ", b.txt, ")")
            elif kind == "bool" and op not in ("==", "!="):
                test = FALSE
            else:
                assert a.num is not None and b.num is not None
                test = cat("(", a.num, f" {_SQL_OPS[op]} ", b.num, ")")
            cases.append((kind, test))
        tests = [(all_of([a.is_kind(kind), b.is_kind(kind)]), test) for kind, test in cases]
        if not cases:
            return all_of([a.present, b.present, other])
        if other == FALSE or (len(tests) == 1 and tests[0][0] == TRUE):
            body = any_of(all_of([guard, test]) for guard, test in tests)  # the kinds exclude each other
        else:
            whens = [cat(" WHEN ", guard, " THEN ", test) for guard, test in tests]
            body = cat("CASE", *whens, " ELSE ", other, " END")
        return all_of([a.present, b.present, body])

    def contains(self, a: Value, b: Value) -> Sql:
        if a.never or b.never:
            return FALSE
        options: list[Sql] = []
        if "string" in a.kinds and "string" in b.kinds:
            assert a.txt is not None and b.txt is not None
            options.append(all_of([a.is_kind("string"), b.is_kind("string"),
                                   cat("(", self.position(a.txt, b.txt), " > 0)")]))
        if "array" in a.kinds and a.elements is not None:
            options.append(all_of([a.is_kind("array"), a.elements(lambda element: self.compare("==", element, b))]))
        return all_of([a.present, b.present, any_of(options)])

    def starts_with(self, a: Value, b: Value) -> Sql:
        if a.never or b.never or "string" not in a.kinds or "string" not in b.kinds:
            return FALSE
        assert a.txt is not None and b.txt is not None
        return all_of([a.present, b.present, a.is_kind("string"), b.is_kind("string"),
                       cat("(", self.position(a.txt, b.txt), " = 1)")])

    def present(self, value: Value) -> Sql:
        return TRUE if value.present is None else value.present

    def condition(self, node: Node) -> Sql:
        if isinstance(node, And):
            return all_of(self.condition(item) for item in node.items)
        if isinstance(node, Or):
            return any_of(self.condition(item) for item in node.items)
        if isinstance(node, Not):
            return negate(self.condition(node.item))
        if isinstance(node, InSegment):
            return cat("EXISTS (SELECT 1 FROM segment_history h WHERE h.workspace_id = ", bind(self.rt.id),
                       " AND h.profile_id = p.id AND h.segment = ", bind(node.name), " AND h.entered_at <= ",
                       bind(self.at), " AND (h.exited_at IS NULL OR h.exited_at > ", bind(self.at), "))")
        if _constant(node):
            return truth(evaluate(node, DictContext({})))
        if isinstance(node, Compare):
            return self.compare(node.op, self.value(node.left), self.value(node.right))
        if isinstance(node, In):
            left = self.value(node.left)
            return any_of(self.compare("==", left, self.literal(v)) for v in node.values)
        if isinstance(node, Contains):
            return self.contains(self.value(node.left), self.value(node.right))
        if isinstance(node, StartsWith):
            return self.starts_with(self.value(node.left), self.value(node.right))
        if isinstance(node, Exists):
            return self.present(self.value(node.path))
        present = self.present(self.value(node.path))
        return present if node.negated else negate(present)


def _constant(node: Node) -> bool:
    """Whether ``node`` is a test of literals only (so its value does not depend on the profile)."""
    literal = (Const, DurationConst, DateConst)
    if isinstance(node, Compare | Contains | StartsWith):
        return isinstance(node.left, literal) and isinstance(node.right, literal)
    return isinstance(node, In) and isinstance(node.left, literal)


def compile_rule(rule: Node, rt: WorkspaceRuntime, dialect: Dialect, at: Millis) -> tuple[str, list[object]]:
    """A query with ``?`` placeholders and its parameters, selecting the ``id`` of every live profile
    of ``rt.id`` that matches ``rule`` at instant ``at``, ordered by id (code point order).

    Raises ``ValidationError`` (``invalid_rule``) for a rule that is not a segment rule (it reads
    ``context.`` or ``event.``) or that SQL cannot answer as the evaluator does.
    """
    ensure_segment_rule(rule)
    compiler = _Compiler(rt, dialect, at)
    joins, condition = compiler.finish(compiler.condition(rule))
    order = 'p.id COLLATE "C"' if compiler.pg else "p.id"
    query = cat(
        "SELECT p.id FROM profiles p\n",
        *[cat(j, "\n") for j in joins],
        "WHERE p.workspace_id = ", bind(rt.id), " AND p.merged_into IS NULL AND ", condition, "\n",
        f"ORDER BY {order}",
    )
    return query.text, list(query.params)


MAX_RULES = 62
"""Rules one ``compile_differences`` query holds: one bit each of a signed 64-bit mask."""


@dataclass(frozen=True, slots=True)
class Scope:
    """Which profiles a ``compile_differences`` query looks at: ids from ``low`` (included) to ``high``
    (excluded) in the database's order, or only ``ids``; everyone by default."""

    low: str | None = None
    high: str | None = None
    ids: tuple[str, ...] | None = None

    def of(self, column: str) -> list[Sql]:
        """Conditions keeping ``column`` (a profile id) in scope."""
        out = []
        if self.low is not None:
            out.append(cat(f"{column} >= ", bind(self.low)))
        if self.high is not None:
            out.append(cat(f"{column} < ", bind(self.high)))
        if self.ids is not None:
            out.append(cat(f"{column} IN (", join(", ", (bind(i) for i in self.ids)), ")") if self.ids else FALSE)
        return out


EVERYONE = Scope()


def compile_differences(rules: Sequence[tuple[str, Node | None]], rt: WorkspaceRuntime, dialect: Dialect,
                        at: Millis, scope: Scope = EVERYONE) -> tuple[str, list[object]]:
    """A query selecting ``(id, matched, stored)`` for every live profile of ``rt.id`` in ``scope`` whose
    current membership of the named segments differs from what their ``rules`` select at instant ``at``
    (a ``None`` rule selects every profile).

    ``matched`` and ``stored`` are bit masks over ``rules`` (bit ``i`` for ``rules[i]``): the rules the
    profile matches, the segments it has an open stay in. The comparison with stored membership
    happens in the database, so a refresh that finds nothing to change reads no profile into Python.

    A rule that reads the buckets of one series and nothing else (``count("Order Completed",
    within=30d) >= 1``) is decided inside that series' pass over its buckets, grouped by profile;
    a profile with no bucket in the pass gets what the rule gives with no events, computed by the
    same expression over no rows. The other rules read one join per series (all windows in one
    pass), traits, consent and stays as ``compile_rule`` does. Errors as ``compile_rule``.
    """
    if not 0 < len(rules) <= MAX_RULES:
        raise ValueError(f"between 1 and {MAX_RULES} rules per query, not {len(rules)}")
    compiler = _Compiler(rt, dialect, at)
    bit = compiler.bit
    general: list[Sql] = []
    alone: dict[str, list[Sql]] = {}
    columns: dict[str, dict[tuple[str, Millis | None], str]] = {}
    for i, (_name, rule) in enumerate(rules):
        if rule is None:
            general.append(bit(i))
            continue
        ensure_segment_rule(rule)
        own = _Compiler(rt, dialect, at)
        condition = own.condition(rule)
        series = own.only_series(condition)
        if series is None:
            general.append(cat("CASE WHEN ", compiler.condition(rule), " THEN ", bit(i), " ELSE 0 END"))
            continue
        inlined = own.inline(condition, columns.setdefault(series, {}))
        alone.setdefault(series, []).append(cat("CASE WHEN ", inlined, " THEN ", bit(i), " ELSE 0 END"))
    passes: list[Sql] = []
    defaults: list[Sql] = []
    for series, bits in alone.items():
        found, default = compiler.series_pass(series, join(" + ", bits), columns[series], scope.of("profile_id"))
        passes.append(found)
        defaults.append(default)
    parts = [*defaults, *([Sql("COALESCE(x.delta, 0)")] if passes else []), *general]
    joins, matched = compiler.finish(join(" + ", parts))
    if len(passes) == 1:
        joins.append(cat("LEFT JOIN (", passes[0], ") x ON x.profile_id = p.id"))
    elif passes:
        joins.append(cat("LEFT JOIN (SELECT profile_id, SUM(delta) AS delta FROM (", join(" UNION ALL ", passes),
                         ") u GROUP BY profile_id) x ON x.profile_id = p.id"))
    stored = join(" ", (cat(" WHEN ", bind(name), " THEN ", bit(i)) for i, (name, _rule) in enumerate(rules)))
    query = cat(
        "SELECT id, matched, stored FROM (SELECT p.id, ", matched, " AS matched,",
        " (SELECT COALESCE(SUM(CASE h.segment", stored, " ELSE 0 END), 0) FROM segment_history h",
        " WHERE h.workspace_id = ", bind(rt.id), " AND h.profile_id = p.id AND h.exited_at IS NULL) AS stored",
        " FROM profiles p\n",
        *[cat(j, "\n") for j in joins],
        "WHERE ", all_of([cat("p.workspace_id = ", bind(rt.id)), Sql("p.merged_into IS NULL"), *scope.of("p.id")]),
        ") d WHERE matched <> stored",
    )
    return query.text, list(query.params)


_AGGREGATES = {"n": ("SUM", "n"), "nn": ("SUM", "nn"), "total": ("SUM", "total"), "vmin": ("MIN", "vmin"),
               "vmax": ("MAX", "vmax"), "first_ts": ("MIN", "first_ts"), "last_ts": ("MAX", "last_ts"),
               "last_bucket": ("MAX", "bucket")}
"""The per-profile aggregates of a series' buckets a rule can read (function, column), in a fixed order."""
_REFERENCE = re.compile(r"\b(w[0-9]+)\.(\w+)")
_PROFILE = re.compile(r"\bp\.")


def _widest(windows: Iterable[Millis | None]) -> Millis | None:
    """The window covering all of ``windows`` (None, all time, when one of them is)."""
    out = Millis(0)
    for w in windows:
        if w is None:
            return None
        out = max(out, w)
    return out


def _renamed(match: re.Match[str], renamed: dict[str, str]) -> str:
    alias = match.group(1)
    join = renamed.get(alias)
    return match.group(0) if join is None else f"{join}.{alias}_{match.group(2)}"
