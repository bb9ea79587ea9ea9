"""Rule evaluation benchmark: the interpreter against compiled rules, in microseconds per evaluation.

    .venv/bin/python bench/rules.py [--seconds 0.2] [--repeat 5]

A dozen segment rules of the shapes marketers write (event windows, computed traits, traits,
consent, lists, dates, ``days_since``, segment membership) are decided for one realistic profile,
through two contexts:

- a ``DictContext`` over the profile's data. The ``reads`` column is the floor neither engine can
  go below: the same context calls (``lookup``, ``event_function``, ...) replayed with no rule logic;
- the same, wrapped in a context that remembers each field and event function it has read, as the
  live segment engine wraps its ``StoredContext`` for all the rules of one profile (warmed first,
  so its reads are dictionary hits and the rule logic is nearly all that is left).

Each figure is the best of ``--repeat`` timings; rules are compiled once, outside the timings.
"""

from __future__ import annotations

import argparse
import functools
import operator
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rapport.rules import DictContext, EventFn, Node, Path, evaluate, parse
from rapport.rules.analysis import event_functions
from rapport.rules.compile import compile_rule
from rapport.segments.service import RememberingContext
from rapport.types import DAY, HOUR, Millis

NOW: Millis = 1_769_904_000_000  # 2026-02-01T00:00:00Z

RULES = (
    'count("Order Completed", within=30d) >= 1',
    'count("Product Viewed", within=7d) >= 3 and traits.plan == "pro"',
    "computed.orders_30d >= 2 and consent.analytics",
    'sum("Order Completed", "revenue", within=90d) > 200',
    'count("Cart Added", within=1d) >= 1 and count("Order Completed", within=1d) == 0',
    'days_since("Order Completed") > 30 and computed.revenue_total > 100',
    'traits.country in ["FR", "DE", "ES", "IT", "NL", "BE"] and traits.age >= 18',
    "traits.signed_up_at > 2026-01-01 and not consent.marketing_email",
    'traits.email contains "@example.com" or traits.tags contains "vip"',
    'context.page.path starts_with "/shop" and exists(traits.email) and traits.unsubscribed is null',
    'in_segment("vip") or (computed.lifetime_value >= 500 and traits.plan in ["plus", "pro"])',
    'traits.address.city == "Paris" and traits.birthday is not null and days_since("Email Opened") <= 14',
)

PROFILE: dict[str, dict[str, object]] = {
    "traits": {
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "plan": "pro",
        "country": "FR",
        "age": 36,
        "signed_up_at": "2026-01-15T10:00:00Z",
        "birthday": "1990-12-10",
        "tags": ["newsletter", "early-adopter", "vip"],
        "address": {"city": "Paris", "zip": "75011", "street": "1 rue Oberkampf"},
        "phone": "+33600000000",
        "locale": "fr-FR",
    },
    "computed": {"orders_30d": 3, "revenue_total": 412.5, "lifetime_value": 980.0, "average_order_value": 82.5},
    "consent": {"analytics": True, "marketing_email": False, "marketing_sms": True, "necessary": True},
    "context": {"page": {"path": "/shop/shoes", "title": "Shoes"}, "locale": "fr-FR"},
}
FUNCTION_VALUES: dict[tuple[str, str], object] = {
    ("count", "Order Completed"): 2,
    ("count", "Product Viewed"): 7,
    ("count", "Cart Added"): 1,
    ("sum", "Order Completed"): 245.0,
    ("last_seen", "Order Completed"): NOW - 40 * DAY,
    ("last_seen", "Email Opened"): NOW - 3 * DAY - 5 * HOUR,
}


@dataclass(slots=True)
class Reads:
    """An ``EvalContext`` that records the reads a rule makes, as calls to replay for the floor."""

    inner: DictContext
    calls: list[tuple[Callable[[Any], object], Any]] = field(default_factory=list)

    @property
    def now_ms(self) -> Millis:
        self.calls.append((operator.attrgetter("now_ms"), self.inner))
        return self.inner.now_ms

    def lookup(self, path: Path) -> tuple[bool, object]:
        self.calls.append((self.inner.lookup, path))
        return self.inner.lookup(path)

    def event_function(self, fn: EventFn) -> object | None:
        self.calls.append((self.inner.event_function, fn))
        return self.inner.event_function(fn)

    def in_segment(self, name: str) -> bool:
        self.calls.append((self.inner.in_segment, name))
        return self.inner.in_segment(name)


def context(rules: list[Node]) -> DictContext:
    """The profile, with the value of every event function the rules use (and ``days_since``'s ``last_seen``)."""
    functions: dict[EventFn, object] = {}
    for rule in rules:
        for fn in event_functions(rule):
            name = "last_seen" if fn.fn == "days_since" else fn.fn
            functions[EventFn(name, fn.event, fn.property, fn.within_ms, fn.where)] = FUNCTION_VALUES[(name, fn.event)]
    return DictContext(PROFILE, NOW, functions, frozenset({"newsletter"}))


def per_call_us(fn: Callable[[], object], seconds: float, repeat: int) -> float:
    """Best of ``repeat`` timings, each of enough calls to take about ``seconds``, in µs per call."""
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / 4:
            break
        number *= 4
    number = max(1, int(number * seconds / elapsed))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.2, help="time per measurement (default 0.2)")
    parser.add_argument("--repeat", type=int, default=5, help="measurements per figure, the best kept (default 5)")
    args = parser.parse_args()

    def timed(fn: Callable[[], object]) -> float:
        return per_call_us(fn, args.seconds, args.repeat)

    rules = [parse(text) for text in RULES]
    plain = context(rules)
    remembering = RememberingContext(plain)
    print(f"Python {platform.python_version()} on {platform.machine()}; µs per evaluation, best of {args.repeat}")
    print(f"{'':52} {'':>6} | {'DictContext':^39} | {'remembering context':^28}")
    print(f"{'#':>2}  {'rule':<48} {'result':>6} | {'interp':>8} {'compiled':>9} {'speedup':>8} {'reads':>9}"
          f" | {'interp':>8} {'compiled':>9} {'speedup':>8}")
    columns: list[list[float]] = [[] for _ in range(5)]
    for number, (text, rule) in enumerate(zip(RULES, rules, strict=True), start=1):
        compiled = compile_rule(rule)
        result = evaluate(rule, plain)
        if compiled(plain) is not result or compiled(remembering) is not result:
            sys.exit(f"engines disagree on {text!r}")
        reads = Reads(plain)
        compiled(reads)

        def floor(calls: list[tuple[Callable[[Any], object], Any]] = reads.calls) -> None:
            for call, arg in calls:
                call(arg)

        row = (
            timed(functools.partial(evaluate, rule, plain)),
            timed(functools.partial(compiled, plain)),
            timed(floor),
            timed(functools.partial(evaluate, rule, remembering)),
            timed(functools.partial(compiled, remembering)),
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
        shown = text if len(text) <= 48 else text[:45] + "..."
        print(f"{number:>2}  {shown:<48} {result!s:>6} | {row[0]:>8.2f} {row[1]:>9.2f} {row[0] / row[1]:>7.1f}×"
              f" {row[2]:>9.2f} | {row[3]:>8.2f} {row[4]:>9.2f} {row[3] / row[4]:>7.1f}×")
    mean = [statistics.fmean(column) for column in columns]
    print(f"{'':>2}  {'mean of the twelve':<48} {'':>6} | {mean[0]:>8.2f} {mean[1]:>9.2f} {mean[0] / mean[1]:>7.1f}×"
          f" {mean[2]:>9.2f} | {mean[3]:>8.2f} {mean[4]:>9.2f} {mean[3] / mean[4]:>7.1f}×")
    for label, (interpreted, compiled_) in (("DictContext", (0, 1)), ("remembering context", (3, 4))):
        ratios = [i / c for i, c in zip(columns[interpreted], columns[compiled_], strict=True)]
        print(f"speedup over {label}: geometric mean {statistics.geometric_mean(ratios):.1f}×,"
              f" min {min(ratios):.1f}×, max {max(ratios):.1f}×")


if __name__ == "__main__":
    main()
