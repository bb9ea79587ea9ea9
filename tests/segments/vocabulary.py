"""A small, collision-prone world for engine agreement: definitions, random profiles, random rules.

Values come from short pools around a few instants so that random rules and random profiles meet:
equal and prefixed strings, ISO dates naming the very instants of events, numbers that round to the
same double, and instants taken from the data itself, exactly where windows end, grants expire and
stays begin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson
from hypothesis import strategies as st

from rapport.clock import to_iso
from rapport.consent.model import CONSENT_STATES
from rapport.profiles.computed import Bucket, SeriesKey, TraitDef, bucket_of
from rapport.rules import (
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
    StartsWith,
    analysis,
    parse,
)
from rapport.rules.ast import COMPARE_OPS, CompareOp, FnName
from rapport.rules.dates import format_iso
from rapport.segments.functions import series_key
from rapport.types import DAY, HOUR, MINUTE, SECOND, Millis

T0: Millis = 1_767_225_600_000
"""2026-01-01T00:00:00Z: events happen in the hour after it."""
WINDOWS = {"30s": 30 * SECOND, "10m": 10 * MINUTE, "1h": HOUR}
WHERE = "event.revenue > 10"
EVENT_TIMES = tuple(T0 + s * SECOND + ms for s in (0, 1, 30, 31, 600, 3600) for ms in (0, 1, 999))
PURPOSES = {"newsletter": "legitimate_interest", "billing": "contract", "records": "legal_obligation",
            "rescue": "vital_interest", "census": "public_task"}
"""Purposes added to the defaults, one per legal basis other than consent."""
PURPOSE_NAMES = ("analytics", "marketing_email", "necessary", *PURPOSES, "ghost")
purposes = st.sampled_from(("analytics", "analytics", "marketing_email", *PURPOSE_NAMES))
"""Mostly purposes that need consent, whose grants expire into a denial."""
SEGMENT_NAMES = ("vip", "lapsed", "ghost")

# --- definitions ------------------------------------------------------------------------------------

_TRAITS = (
    ("o_count", "count", "Order Completed", None, None),
    ("o_big", "count", "Order Completed", None, WHERE),
    ("o_sum", "sum", "Order Completed", "revenue", None),
    ("o_big_sum", "sum", "Order Completed", "revenue", WHERE),
    ("o_avg", "avg", "Order Completed", "revenue", None),
    ("o_min", "min", "Order Completed", "revenue", None),
    ("o_max", "max", "Order Completed", "revenue", None),
    ("o_distinct", "distinct", "Order Completed", "revenue", None),
    ("o_first_at", "first", "Order Completed", None, None),
    ("o_last_at", "last", "Order Completed", None, None),
    ("o_first_rev", "first", "Order Completed", "revenue", None),
    ("o_last_rev", "last", "Order Completed", "revenue", None),
    ("plan_last", "last", "Plan Changed", "plan", None),
    ("plan_first", "first", "Plan Changed", "plan", None),
    ("email_last", "last", "Signed Up", "email", None),
    ("email_distinct", "distinct", "Signed Up", "email", None),
)
"""(name, aggregate, event, property, where); each also comes windowed as ``<name>_30s`` and ``<name>_1h``."""
_SUFFIXES = ("", "_30s", "_1h")


def resources_yaml() -> str:
    """The ``ConsentPurpose`` and ``ComputedTrait`` documents of the world."""
    docs = [f"kind: ConsentPurpose\nname: {name}\nlegal_basis: {basis}\ndescription: Data used for {name}\n"
            for name, basis in PURPOSES.items()]
    for name, aggregate, event, prop, where in _TRAITS:
        for suffix in _SUFFIXES:
            doc = f"kind: ComputedTrait\nname: {name}{suffix}\nevent: {event}\naggregate: {aggregate}\n"
            doc += f"property: {prop}\n" if prop else ""
            doc += f"where: '{where}'\n" if where else ""
            doc += f"window: {suffix[1:]}\n" if suffix else ""
            docs.append(doc)
    return "---\n".join(docs)


def _named(aggregates: Iterable[str], *, prop: bool | None = None) -> tuple[str, ...]:
    return tuple(f"{name}{s}" for name, agg, _e, p, _w in _TRAITS for s in _SUFFIXES
                 if agg in aggregates and (prop is None or (p is not None) == prop))


NUMERIC_COMPUTED = (*_named(("count", "sum", "avg", "min", "max", "distinct")), "order_count", "orders_30d",
                    "revenue_total", "average_order_value", "days_since_last_order", "email_open_rate")
TIMED_COMPUTED = (*_named(("first", "last"), prop=False), "first_seen", "last_seen", "last_order_at")
JSON_COMPUTED = _named(("first", "last"), prop=True)
"""Computed traits whose value is an event property's JSON (SQL cannot compare them with dates)."""
COMPUTED_NAMES = (*NUMERIC_COMPUTED, *TIMED_COMPUTED, *JSON_COMPUTED, "nope")

SERIES = {
    "any": SeriesKey("*"),
    "orders": SeriesKey("Order Completed"),
    "revenue": SeriesKey("Order Completed", "revenue"),
    "big": SeriesKey("Order Completed", None, WHERE),
    "big_revenue": SeriesKey("Order Completed", "revenue", WHERE),
    "delivered": SeriesKey("Email Delivered"),
    "opened": SeriesKey("Email Opened"),
    "plan": SeriesKey("Plan Changed", "plan"),
    "email": SeriesKey("Signed Up", "email"),
}
_WHERE_NODE = parse(WHERE)

# --- values -----------------------------------------------------------------------------------------

STRINGS = ("", "a", "ab", "b", "B", "é", "😀")
ISO_TEXTS = ("2026-01-01", "2026-01-01T00:00:30Z", "2026-01-01 00:00:31", "2026-01-01T01:00:00+01:00",
             "2026-02-30", *(to_iso(t) for t in EVENT_TIMES[::4]))
NUMBERS = (0, 1, -1, 0.5, 2, 10, 10.5, 11, 2**53, 2**53 + 1, 1e20, T0, float(T0 + 30 * SECOND))
MARKER = {"$pii": "c2VhbGVk"}

strings = st.sampled_from(STRINGS + ISO_TEXTS)
numbers = st.sampled_from(NUMBERS)
scalars = st.one_of(strings, numbers, st.booleans())
json_values = st.recursive(
    st.one_of(st.none(), scalars, st.just(MARKER)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["city", "zip", "geo"]), inner,
                                                                  max_size=3),
    max_leaves=4,
)
timestamps = st.one_of(st.sampled_from(ISO_TEXTS), st.sampled_from(EVENT_TIMES))
FIELDS: dict[tuple[str, ...], st.SearchStrategy[object]] = {
    ("plan",): strings,
    ("age",): numbers,
    ("vip",): st.booleans(),
    ("signup",): timestamps,
    ("tags",): st.lists(st.one_of(scalars, timestamps, json_values), max_size=4),
    ("address",): st.fixed_dictionaries({}, optional={
        "city": strings, "zip": numbers, "geo": st.fixed_dictionaries({}, optional={"lat": numbers})}),
    ("address", "city"): strings,
    ("address", "zip"): numbers,
    ("address", "geo", "lat"): numbers,
    ("email",): st.one_of(st.just(MARKER), strings),
}
"""Trait fields and the values they usually hold (each trait also holds anything, now and then)."""
TRAIT_NAMES = tuple(path[0] for path in FIELDS if len(path) == 1)
revenues = st.one_of(st.sampled_from([-1.5, 0, 0.25, 1, 2.5, 10, 10.25, 11, 12]),
                     st.sampled_from([None, "12", True, [1, 2]]))
"""Order revenues: quarters (exact sums in any order), and now and then something that is no number."""
_plan_scalars = st.one_of(st.sampled_from(STRINGS), st.integers(0, 3), st.sampled_from([0.5, 2.5]), st.booleans())
plans = st.one_of(_plan_scalars, _plan_scalars, st.lists(_plan_scalars, max_size=3), json_values)
"""Values of an event property of any kind: scalars, lists of them, and anything JSON."""

# --- profiles -----------------------------------------------------------------------------------------

Event = tuple[Millis, int, object, bool]
"""(ts, seq, property value, whether the event has the property)."""


@dataclass(slots=True)
class Profile:
    id: str
    merged_into: str | None = None
    traits: dict[str, object] = field(default_factory=dict)
    events: dict[str, list[Event]] = field(default_factory=dict)
    """By ``SERIES`` name."""
    ledger: list[tuple[str, str, Millis, Millis | None]] = field(default_factory=list)
    """(purpose, state, effective_at, expires_at) in the order they are appended."""
    stays: list[tuple[str, Millis, Millis | None]] = field(default_factory=list)


def buckets(events: Sequence[Event], has_property: bool, sealed: bool) -> list[Bucket]:
    """The buckets ingestion would keep for these events of one series (``sealed``: a personal property)."""
    out: dict[Millis, Bucket] = {}
    for ts, seq, value, found in events:
        bucket = out.setdefault(bucket_of(ts), Bucket(bucket_of(ts)))
        seal = None
        if sealed and found and value is not None:
            seal = (orjson.dumps({"$pii": f"sealed-{value!r}"}).decode(), f"h{value!r}")
        bucket.add(ts, seq, value if found else None, has_property, seal)
    return list(out.values())


def instants_of(people: Sequence[Profile], rule: Node | None = None,
                traits: Mapping[str, TraitDef] | None = None) -> list[Millis]:
    """Instants where something changes for these profiles: events, the ends of windows and (half)
    days after them, consent entries and expiries, stays (see ``moments`` for the milliseconds around).

    With ``rule`` (and the workspace's ``traits``), only what the rule reads: the events of its series
    and its windows, entries of its purposes and stays in its segments (``T0`` when none).
    """
    series: dict[str, set[Millis | None]] = {}
    for path in analysis.paths(rule) if rule is not None else ():
        defn = (traits or {}).get(path.parts[0]) if path.root == "computed" else None
        for key in defn.all_series() if defn is not None else ():
            series.setdefault(key.id, set()).add(defn.window_ms)  # type: ignore[union-attr]
    for fn in analysis.event_functions(rule) if rule is not None else ():
        series.setdefault(series_key(fn).id, set()).add(fn.within_ms)
    purposes = {p.parts[0] for p in analysis.paths(rule) if p.root == "consent"} if rule is not None else None
    segments = analysis.segments(rule) if rule is not None else None
    base: set[Millis] = {T0}
    for p in people:
        for name, events in p.events.items():
            windows = series.get(SERIES[name].id) if rule is not None else {*WINDOWS.values()}
            for ts, *_ in events if windows is not None else ():
                b = bucket_of(ts)
                base |= {ts, b} | {b + k * DAY // 2 for k in (1, 2, 3, 4)} | {ts + k * DAY // 2 for k in (1, 2, 3)}
                base |= {b + w for w in windows if w is not None}
        for purpose, _state, effective, expires in p.ledger:
            if purposes is None or purpose in purposes:
                base |= {effective} | ({expires} if expires is not None else set())
        for segment, entered, exited in p.stays:
            if segments is None or segment in segments:
                base |= {entered} | ({exited} if exited is not None else set())
    return sorted(base)


def moments(people: Sequence[Profile], rule: Node, traits: Mapping[str, TraitDef]) -> st.SearchStrategy[Millis]:
    """Instants to evaluate ``rule`` at: mostly where it may change, else anywhere something changes;
    exactly there, or a millisecond before or after."""
    near = st.sampled_from(instants_of(people, rule, traits))
    where = st.one_of(near, near, near, st.sampled_from(instants_of(people)))
    return st.builds(lambda t, d: t + d, where, st.sampled_from([0, 0, -1, 1]))


_EVENT_VALUES: dict[str, st.SearchStrategy[object]] = {
    "revenue": revenues, "big_revenue": revenues, "plan": plans, "email": st.sampled_from(STRINGS)}


_BUSY_SERIES = ("any", "orders", "orders", "revenue", "revenue", "revenue", "big", "big_revenue", "big_revenue",
                "delivered", "opened", "plan", "plan", "plan", "email", "email")
"""Series by how often an event lands in them: often where values, firsts, lasts and distincts matter."""


@st.composite
def series_events(draw: st.DrawFn) -> dict[str, list[Event]]:
    """Up to 20 events spread over the series; the draw order is the arrival order (``seq``)."""
    out: dict[str, list[Event]] = {name: [] for name in SERIES}
    for seq in range(1, draw(st.integers(0, 20)) + 1):
        name = draw(st.sampled_from(_BUSY_SERIES))
        values = _EVENT_VALUES.get(name)
        value = None if values is None else draw(values)
        out[name].append((draw(st.sampled_from(EVENT_TIMES)), seq, value, value is not None or draw(st.booleans())))
    return out


CONSENT_TIMES = (T0, T0 + SECOND, T0 + 31 * SECOND, T0 + HOUR)
"""Few instants, so that entries tie (the later ``seq`` decides) and expire where others begin."""


@st.composite
def ledger_entries(draw: st.DrawFn) -> list[tuple[str, str, Millis, Millis | None]]:
    out = []
    for _ in range(draw(st.integers(0, 5))):
        purpose = draw(purposes)
        state = draw(st.sampled_from(("granted", *CONSENT_STATES)))
        effective = draw(st.sampled_from(CONSENT_TIMES))
        lasting = draw(st.none() | st.sampled_from([SECOND, 30 * SECOND, HOUR, DAY]))
        expires = draw(st.none() | st.sampled_from(CONSENT_TIMES)) if lasting is None else effective + lasting
        out.append((purpose, state, effective, expires))
    return out


@st.composite
def stays(draw: st.DrawFn) -> list[tuple[str, Millis, Millis | None]]:
    """Stays in two segments: closed ones, then possibly an open one, never overlapping."""
    out: list[tuple[str, Millis, Millis | None]] = []
    for segment in SEGMENT_NAMES[:2]:
        times: list[Millis | None] = [*sorted(draw(st.lists(st.sampled_from(EVENT_TIMES), max_size=4, unique=True)))]
        if len(times) % 2:
            times.append(None)
        out += [(segment, t, times[i + 1]) for i, t in enumerate(times) if i % 2 == 0 and t is not None]
    return out


PROFILE_IDS = ("p", "P", "q", "_a", "é", "Z", "0", "a")
"""Ids whose code point order differs from a natural-language collation's."""


@st.composite
def profiles(draw: st.DrawFn) -> list[Profile]:
    """2 to 8 profiles; now and then one is merged into the first."""
    out = []
    for i in range(draw(st.integers(2, 8))):
        p = Profile(PROFILE_IDS[i])
        for name in TRAIT_NAMES:
            presence = draw(st.integers(0, 5))
            if presence:
                p.traits[name] = draw(FIELDS[(name,)] if presence > 1 else json_values)
        p.events = draw(series_events())
        p.ledger = draw(ledger_entries())
        p.stays = draw(stays())
        out.append(p)
    for p in out[1:]:
        if draw(st.integers(0, 5)) == 0:
            p.merged_into = out[0].id
    return out


# --- rules ------------------------------------------------------------------------------------------

ops: st.SearchStrategy[CompareOp] = st.sampled_from(COMPARE_OPS)
durations = st.sampled_from([("1s", SECOND), ("30s", 30 * SECOND), ("1h", HOUR), ("1d", DAY)]).map(
    lambda d: DurationConst(d[1], d[0]))
dates = st.sampled_from((*EVENT_TIMES, T0 + HOUR + 1, T0 + DAY)).map(lambda ms: DateConst(ms, format_iso(ms)))
consts = st.builds(Const, st.one_of(st.none(), scalars))
literals: st.SearchStrategy[Literal_] = st.one_of(consts, consts, durations, dates)
counts = st.sampled_from([0, 1, 2, 3, 0.5, 1.5, 10, 10.5, 11.25, 0.0, 2.0]).map(Const)

trait_paths = st.one_of(
    st.sampled_from([Path("traits", f) for f in FIELDS]),
    st.sampled_from([("nothing",), ("address", "geo"), ("email", "$pii"), ("tags", "city"), ("plan", "city")]).map(
        lambda p: Path("traits", p)),
)
computed_paths = st.one_of(
    st.sampled_from(COMPUTED_NAMES).map(lambda n: Path("computed", (n,))),
    st.just(Path("computed", ("o_count", "x"))),
)
numeric_computed = st.sampled_from(NUMERIC_COMPUTED).map(lambda n: Path("computed", (n,)))
timed_computed = st.sampled_from(TIMED_COMPUTED).map(lambda n: Path("computed", (n,)))
json_computed = st.sampled_from(JSON_COMPUTED).map(lambda n: Path("computed", (n,)))
consent_paths = purposes.map(lambda n: Path("consent", (n,)))
paths = st.one_of(trait_paths, trait_paths, computed_paths, computed_paths, consent_paths)


@st.composite
def event_functions(draw: st.DrawFn) -> EventFn:
    fn: FnName = draw(st.sampled_from(["count", "sum", "avg", "min", "max", "last_seen", "first_seen",
                                       "days_since"]))
    event = draw(st.sampled_from(["Order Completed", "Order Completed", "Order Completed", "Never Happened"]))
    prop = "revenue" if fn in ("sum", "avg", "min", "max") else None
    where = _WHERE_NODE if fn in ("count", "sum", "last_seen") and draw(st.booleans()) else None
    return EventFn(fn, event, prop, draw(st.sampled_from([None, *WINDOWS.values()])), where)


@st.composite
def trait_tests(draw: st.DrawFn) -> Node:
    """A trait field compared with a value of the kind it usually holds."""
    field_path = draw(st.sampled_from(sorted(FIELDS)))
    value = draw(FIELDS[field_path])
    if isinstance(value, list | dict) or value is None:
        value = draw(scalars)
    literal: Literal_ = Const(value)  # type: ignore[arg-type]
    if field_path == ("signup",) and isinstance(value, int) and draw(st.booleans()):
        literal = DateConst(value)
    return Compare(draw(ops), Path("traits", field_path), literal)


operands: st.SearchStrategy[Operand] = st.one_of(paths, paths, literals, event_functions())
random_leaves: st.SearchStrategy[Node] = st.one_of(
    st.builds(Compare, ops, operands, operands),
    st.builds(In, operands, st.lists(literals, max_size=3).map(tuple)),
    st.builds(Contains, operands, operands),
    st.builds(StartsWith, operands, operands),
    st.builds(Exists, paths),
    st.builds(IsNull, paths, st.booleans()),
)
"""Anything goes: mostly tests across kinds, which must agree too."""
truths = st.builds(Const, st.booleans())
texts = st.builds(Const, st.sampled_from(("b", "T", ":3", "a", "", "2026-01-01", "😀")))
"""Substrings and prefixes of the strings profiles hold, inside them or at their start."""
bools = st.sampled_from([Path("traits", ("vip",)), *[Path("consent", (n,)) for n in PURPOSE_NAMES]])
windowed = st.sampled_from([n for n in NUMERIC_COMPUTED if n.endswith(("_30s", "_1h"))]).map(
    lambda n: Path("computed", (n,)))
special = st.sampled_from(["email_open_rate", "days_since_last_order", "o_avg", "o_distinct_30s", "email_distinct",
                           "o_big_sum_1h", "o_distinct"]).map(lambda n: Path("computed", (n,)))
halves = st.sampled_from([0, 0.5, 1, 1.5, 2, 0.25]).map(Const)
days_since = st.builds(EventFn, st.just("days_since"), st.just("Order Completed"), st.none(),
                       st.sampled_from([None, *WINDOWS.values()]))

trait_leaves: st.SearchStrategy[Node] = st.one_of(
    trait_tests(),
    st.builds(Compare, ops, trait_paths, trait_paths),
    st.builds(Compare, ops, st.sampled_from([Path("traits", (n,)) for n in ("signup", "plan", "tags", "age")]), dates),
    st.builds(In, st.sampled_from([Path("traits", ("plan",)), Path("traits", ("age",)), Path("traits", ("signup",))]),
              st.lists(st.builds(Const, scalars) | dates, max_size=4).map(tuple)),
    st.builds(Contains, st.just(Path("traits", ("tags",))), st.builds(Const, scalars) | dates),
    st.builds(Contains, st.sampled_from([Path("traits", ("plan",)), Path("traits", ("signup",))]), texts),
    st.builds(Contains, trait_paths, trait_paths),
    st.builds(StartsWith, st.sampled_from([Path("traits", ("plan",)), Path("traits", ("signup",))]), texts),
    st.builds(Compare, ops, st.just(Path("traits", ("vip",))), truths),
    st.builds(Exists, trait_paths),
    st.builds(IsNull, trait_paths, st.booleans()),
)
"""Trait fields against values of their kind and of others."""
computed_leaves: st.SearchStrategy[Node] = st.one_of(
    st.builds(Compare, ops, numeric_computed, counts),
    st.builds(Compare, ops, windowed, counts),
    st.builds(Compare, ops, special, counts),
    st.builds(Compare, ops, st.sampled_from(_named(("distinct",))).map(lambda n: Path("computed", (n,))),
              st.integers(0, 3).map(Const)),
    st.builds(Compare, ops, st.sampled_from([Path("computed", ("email_open_rate",)), Path("computed", (
        "email_click_rate",))]), st.sampled_from([0, 0.5, 1, 2, 1 / 3]).map(Const)),
    st.builds(Compare, ops, st.just(Path("computed", ("days_since_last_order",))), halves),
    st.builds(Compare, ops, timed_computed, dates | st.builds(Const, st.sampled_from(ISO_TEXTS))),
    st.builds(Compare, ops, json_computed, st.builds(Const, st.sampled_from([*STRINGS, -1.5, 0, 1, 10.25, 12, True]))),
    st.builds(Contains, st.sampled_from([Path("computed", (n,)) for n in ("o_last_at", "plan_last", "email_last")]),
              texts),
    st.builds(StartsWith, st.sampled_from([Path("computed", (n,)) for n in ("plan_last", "first_seen")]), texts),
    st.builds(In, json_computed, st.lists(st.builds(Const, scalars), max_size=3).map(tuple)),
    st.builds(Contains, json_computed, st.builds(Const, st.sampled_from([*STRINGS, 0, 1, 0.5, 2.5, True]))),
    st.builds(Exists, computed_paths),
)
"""Computed traits of every aggregate, windowed or not, against numbers, dates and strings."""
function_leaves: st.SearchStrategy[Node] = st.one_of(
    st.builds(Compare, ops, event_functions(), counts),
    st.builds(Compare, ops, event_functions(), dates),
    st.builds(Compare, ops, days_since, halves),
)
"""Event functions with ``within=`` and ``where=``."""
consent_leaves: st.SearchStrategy[Node] = st.one_of(
    st.builds(Compare, st.just("=="), consent_paths, st.just(Const(True))),
    st.builds(Compare, ops, consent_paths, truths),
    st.builds(Compare, ops, bools, bools),
)
"""Consent of every legal basis, granted, denied, withdrawn, expiring."""
segment_leaves: st.SearchStrategy[Node] = st.builds(InSegment, st.sampled_from(SEGMENT_NAMES))
leaves = st.one_of(trait_leaves, computed_leaves, function_leaves, consent_leaves, segment_leaves, random_leaves)


@st.composite
def trees(draw: st.DrawFn, leaves: st.SearchStrategy[Node], depth: int = 2) -> Node:
    """A leaf (now and then with its operands swapped), or ``and``/``or`` of 2 or 3 trees, or ``not`` of a
    tree (often: a NULL that leaked out of a comparison shows under ``not``), at most ``depth`` deep.

    Drawn by hand rather than with ``st.recursive``, which fills its leaf budget with the simplest
    leaf and so skews the mix towards one kind of test.
    """
    shape = draw(st.integers(0, 9)) if depth > 0 else 0
    if shape < 5:
        leaf = draw(leaves)
        if isinstance(leaf, Compare) and draw(st.integers(0, 3)) == 0:
            return Compare(leaf.op, leaf.right, leaf.left)
        return leaf
    if shape >= 8:
        return Not(draw(trees(leaves, depth - 1)))
    items = tuple(draw(trees(leaves, depth - 1)) for _ in range(draw(st.integers(2, 3))))
    return And(items) if shape < 7 else Or(items)


FAMILIES: dict[str, st.SearchStrategy[Node]] = {
    "traits": trees(trait_leaves),
    "computed": trees(computed_leaves),
    "functions": trees(function_leaves),
    "consent and segments": trees(st.one_of(consent_leaves, consent_leaves, segment_leaves)),
    "mixed": trees(leaves),
}
"""Families of rules, each about one feature so that its edges (a window's end, a grant's expiry)
are met often, and one mixing them all."""


@st.composite
def rule_sets(draw: st.DrawFn, per_family: int = 2) -> list[Node]:
    """``per_family`` rules of each family (every example meets every feature), and one more mixed."""
    return [draw(family) for family in FAMILIES.values() for _ in range(per_family)] + [draw(FAMILIES["mixed"])]
