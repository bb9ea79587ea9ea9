"""Experiment assignment against its published specification, its test vectors and its promised split."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapport.errors import ValidationError
from rapport.experiments.assign import BUCKETS, GlobalHoldout, Variant, assign, bucket, place
from rapport.journeys import split as journey_split

DOC = Path(__file__).parents[2] / "docs" / "experiments-assignment.md"


def _table(header: str) -> list[list[str]]:
    """The rows of the Markdown table of the doc whose header row is ``header``."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = lines.index(header) + 2  # skip the header and the |---| row
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _text(cell: str) -> str:
    """A salt or unit id cell: a JSON string literal in backticks."""
    assert cell.startswith("`") and cell.endswith("`"), cell
    value = json.loads(cell[1:-1])
    assert isinstance(value, str)
    return value


Split = tuple[list[Variant], Fraction, Fraction]
SPLITS: dict[str, Split] = {
    name: (
        [Variant(n, Fraction(w)) for n, w in (part.split(":") for part in variants.split(", "))],
        Fraction(holdout),
        Fraction(traffic),
    )
    for name, variants, holdout, traffic in _table("| split | variants | holdout % | traffic % |")
}
VECTORS = _table("| salt | unit id | bucket | split | variant | reason |")
HOLDOUT_VECTORS = _table("| holdout salt | percent | unit id | bucket | held | variant | reason |")


def test_the_doc_publishes_enough_vectors() -> None:
    assert set(SPLITS) == {"even", "three", "thirds", "ramp", "fine"}
    assert len(VECTORS) >= 20
    buckets = {int(row[2]) for row in VECTORS}
    assert {0, BUCKETS - 1} <= buckets
    assert any(not _text(row[1]).isascii() for row in VECTORS)
    assert any(_text(row[1]) == "" for row in VECTORS)


@pytest.mark.parametrize("row", VECTORS, ids=[f"{row[3]}-{row[1]}" for row in VECTORS])
def test_vector(row: list[str]) -> None:
    salt, unit_id, expected_bucket, split_name, variant, reason = row
    assert bucket(_text(salt), _text(unit_id)) == int(expected_bucket)
    if split_name == "-":
        return
    variants, holdout, traffic = SPLITS[split_name]
    got = place(_text(salt), _text(unit_id), variants, holdout_percent=holdout, traffic_percent=traffic)
    assert (got.bucket, got.variant or "-", got.reason) == (int(expected_bucket), variant, reason)
    assert (
        assign(_text(salt), _text(unit_id), variants, holdout_percent=holdout, traffic_percent=traffic) == got.variant
    )


@pytest.mark.parametrize("row", HOLDOUT_VECTORS, ids=[row[2] for row in HOLDOUT_VECTORS])
def test_global_holdout_vector(row: list[str]) -> None:
    salt, percent, unit_id, expected_bucket, held, variant, reason = row
    holdout = GlobalHoldout(_text(salt), int(percent))
    assert bucket(_text(salt), _text(unit_id)) == int(expected_bucket)
    assert holdout.holds(_text(unit_id)) is (held == "yes")
    got = place("exp-hero-2026", _text(unit_id), SPLITS["even"][0], global_holdout=holdout)
    assert (got.variant or "-", got.reason) == (variant, reason)


def test_the_worked_example_of_the_doc() -> None:
    key = b"exp-hero-2026\x1fuser-1"
    assert key.hex() == "6578702d6865726f2d323032361f757365722d31"
    assert bucket("exp-hero-2026", "user-1") == 14674483682090151165 % 10_000 == 1165


def test_journey_splits_share_the_bucket_function() -> None:
    assert journey_split.bucket("cart", "3", "p-1") == bucket("cart", "3", "p-1")
    assert journey_split.BUCKETS == BUCKETS


def _chi_square(observed: Counter[str | None], expected: dict[str | None, float]) -> float:
    assert set(observed) <= set(expected)
    return sum((observed[key] - count) ** 2 / count for key, count in expected.items())


# Upper 0.1 % points of the χ² distribution (α = 0.001, the same level as the SRM check), by degrees
# of freedom: the number of outcomes minus one. Values from scipy.stats.chi2.ppf(0.999, df).
CRITICAL_AT_0_001 = {1: 10.828, 2: 13.816, 3: 16.266, 99: 148.230}
UNITS = [f"profile-{i}" for i in range(100_000)]


@pytest.mark.parametrize("name", ["even", "three", "ramp", "fine"])
def test_split_over_100000_ids_matches_the_configured_weights(name: str) -> None:
    variants, holdout, traffic = SPLITS[name]
    observed = Counter(
        assign("exp-split-check", unit, variants, holdout_percent=holdout, traffic_percent=traffic) for unit in UNITS
    )
    total = sum(Fraction(variant.weight) for variant in variants)
    share: dict[str | None, Fraction] = {
        variant.name: (1 - holdout / 100) * traffic / 100 * Fraction(variant.weight) / total for variant in variants
    }
    share[None] = 1 - sum(share.values(), Fraction(0))  # the holdout plus the units left out by the traffic allocation
    expected = {key: float(value) * len(UNITS) for key, value in share.items() if value}
    statistic = _chi_square(observed, expected)
    assert statistic < CRITICAL_AT_0_001[len(expected) - 1], (name, observed, statistic)


def test_buckets_are_uniform_over_100000_ids() -> None:
    observed = Counter(bucket("exp-uniform", unit) // 100 for unit in UNITS)
    expected = len(UNITS) / 100
    statistic = sum((observed[group] - expected) ** 2 / expected for group in range(100))
    assert statistic < CRITICAL_AT_0_001[99]


def test_order_of_variants_is_part_of_the_specification() -> None:
    forward = [Variant("control"), Variant("treatment")]
    assert assign("exp-hero-2026", "user-2681", forward) == "control"  # bucket 0
    assert assign("exp-hero-2026", "user-2681", forward[::-1]) == "treatment"


ids = st.text(min_size=1, max_size=20).filter(lambda text: "\x1f" not in text)
weights = st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=5).filter(any)
percents = st.fractions(min_value=0, max_value=100, max_denominator=1000)


def _variants(ws: list[int], prefix: str = "v") -> list[Variant]:
    return [Variant(f"{prefix}{i}", w) for i, w in enumerate(ws)]


@given(salt=ids, unit=ids, ws=weights, holdout=percents, traffic=percents)
def test_assignment_is_deterministic_and_consistent_with_the_ranges(
    salt: str, unit: str, ws: list[int], holdout: Fraction, traffic: Fraction
) -> None:
    variants = _variants(ws)
    first = place(salt, unit, variants, holdout_percent=holdout, traffic_percent=traffic)
    assert place(salt, unit, variants, holdout_percent=holdout, traffic_percent=traffic) == first
    assert first.bucket == bucket(salt, unit)
    assert (first.reason == "holdout") is (first.bucket < holdout * 100)
    assert (first.variant is None) is (first.reason != "variant")
    if first.variant is not None:
        assert ws[int(first.variant[1:])] > 0  # a weight-0 variant owns no bucket


@given(salt=ids, unit=ids, ws=weights, holdout=percents, traffic=percents)
def test_variant_names_do_not_enter_the_hash(
    salt: str, unit: str, ws: list[int], holdout: Fraction, traffic: Fraction
) -> None:
    def index(prefix: str) -> int | None:
        got = assign(salt, unit, _variants(ws, prefix), holdout_percent=holdout, traffic_percent=traffic)
        return None if got is None else int(got.removeprefix(prefix))

    assert index("v") == index("renamed-")


@given(salt=ids, unit=ids, ws=weights, at=st.integers(min_value=0, max_value=5))
def test_a_zero_weight_variant_changes_no_assignment(salt: str, unit: str, ws: list[int], at: int) -> None:
    variants = _variants(ws)
    with_paused = [*variants[:at], Variant("paused", 0), *variants[at:]]
    assert assign(salt, unit, with_paused, holdout_percent=10) == assign(salt, unit, variants, holdout_percent=10)


@given(salt=ids, unit=ids, ws=weights, low=percents, high=percents)
def test_raising_traffic_never_moves_an_assigned_unit(
    salt: str, unit: str, ws: list[int], low: Fraction, high: Fraction
) -> None:
    low, high = min(low, high), max(low, high)
    before = assign(salt, unit, _variants(ws), traffic_percent=low)
    if before is not None:
        assert assign(salt, unit, _variants(ws), traffic_percent=high) == before


@given(unit=ids, percent=percents)
def test_a_unit_in_the_global_holdout_gets_no_experiment(unit: str, percent: Fraction) -> None:
    holdout = GlobalHoldout("ws-1-holdout", percent)
    got = place("exp-a", unit, _variants([1, 1]), global_holdout=holdout)
    if holdout.holds(unit):
        assert (got.variant, got.reason) == (None, "global_holdout")
    else:
        assert got == place("exp-a", unit, _variants([1, 1]))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: assign("", "u", [Variant("a")]), "salt must be a non-empty string"),
        (lambda: assign("a\x1fb", "u", [Variant("a")]), "must not contain the separator U\\+001F"),
        (lambda: assign("exp", "", [Variant("a")]), "unit id must be a non-empty string"),
        (lambda: assign("exp", "u", []), "at least one variant"),
        (lambda: assign("exp", "u", [Variant("a"), Variant("a")]), "unique; repeated: 'a'"),
        (lambda: assign("exp", "u", [Variant("a", -1)]), "weight of variant 'a' must not be negative"),
        (lambda: assign("exp", "u", [Variant("a", 0), Variant("b", 0)]), "'a', 'b' add up to 0"),
        (lambda: assign("exp", "u", [Variant("a", 0.5)]), "weight of variant 'a' must be an integer"),  # type: ignore[arg-type]
        (lambda: assign("exp", "u", [Variant("a")], holdout_percent=101), "holdout_percent must be between 0 and 100"),
        (lambda: assign("exp", "u", [Variant("a")], traffic_percent="lots"), "traffic_percent must be a number"),
        (lambda: assign("exp", "\ud800", [Variant("a")]), "lone surrogates"),
        (lambda: bucket(), "at least one part"),
    ],
    ids=[
        "empty-salt",
        "separator-in-salt",
        "empty-unit",
        "no-variants",
        "duplicate-names",
        "negative-weight",
        "zero-total",
        "float-weight",
        "holdout-over-100",
        "traffic-not-a-number",
        "lone-surrogate",
        "no-parts",
    ],
)
def test_bad_input_is_refused_with_a_precise_message(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        call()
