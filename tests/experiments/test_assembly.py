"""Assembling results from sufficient statistics (pure): the test per metric type, one correction family across
metrics × variants, guardrail direction, empty variants, the χ² across three variants, and the JSON shape."""

from __future__ import annotations

import math

import orjson
import pytest

from rapport.experiments.definitions import ExperimentDef, MetricDef, experiment_def, metric_def
from rapport.experiments.results import Sums, analyse, assemble, to_json
from rapport.experiments.stats import (
    benjamini_hochberg,
    holm,
    ratio_ztest,
    two_proportion_ztest,
    welch_ttest,
)


def experiment(*variants: str) -> ExperimentDef:
    return experiment_def({"name": "e", "placement": "p", "purpose": "personalization", "metrics": ["c"],
                           "variants": {v: {"weight": 1} for v in variants}}, {})


CONVERSION = metric_def({"name": "c", "type": "conversion", "event": "A", "window": "7d"})
REVENUE = metric_def({"name": "r", "type": "revenue", "event": "A", "property": "x", "window": "7d"})
RATIO = metric_def({"name": "q", "type": "ratio", "numerator": {"event": "C"}, "denominator": {"event": "D"},
                    "window": "7d"})
UNSUB = metric_def({"name": "u", "type": "conversion", "event": "U", "window": "7d", "direction": "decrease"})


def sums(n: int, sx: float, sxx: float | None = None, sy: float = 0.0, syy: float = 0.0, sxy: float = 0.0) -> Sums:
    return Sums(n, sx, sx if sxx is None else sxx, sy, syy, sxy)


def test_each_type_gets_its_test_and_one_family_is_corrected() -> None:
    e = experiment("control", "b")
    data: list[tuple[MetricDef, str, dict[str, Sums]]] = [
        (CONVERSION, "primary", {"control": sums(1000, 100), "b": sums(1000, 130)}),
        (REVENUE, "secondary", {"control": sums(500, 5000, 90000), "b": sums(500, 5400, 99000)}),
        (RATIO, "secondary", {"control": sums(400, 80, 120, 800, 2000, 200),
                              "b": sums(400, 110, 170, 790, 1950, 260)}),
    ]
    out = analyse(e, [(m, "primary" if i == 0 else "secondary", s) for i, (m, _role, s) in enumerate(data)])
    tests = [m.comparisons[0].test for m in out]
    assert [t.method for t in tests] == ["two_proportion_z", "welch_t", "ratio_delta_z"]
    c, b = data[0][2]["control"], data[0][2]["b"]
    assert tests[0] == two_proportion_ztest(c.sample, b.sample)
    assert tests[1] == welch_ttest(data[1][2]["control"].sample, data[1][2]["b"].sample)
    assert tests[2] == ratio_ztest(data[2][2]["control"].ratio, data[2][2]["b"].ratio)
    raw = [t.p_value for t in tests]
    assert [m.comparisons[0].p_holm for m in out] == holm(raw)
    assert [m.comparisons[0].p_bh for m in out] == benjamini_hochberg(raw)
    assert out[2].comparisons[0].cuped is None and out[0].comparisons[0].cuped is not None


def test_a_guardrail_is_flagged_only_when_it_moves_the_wrong_way() -> None:
    e = experiment("control", "b")
    worse = assemble(e, 0, {"control": 1000, "b": 1000}, {},
                     [(UNSUB, "guardrail", {"control": sums(1000, 10), "b": sums(1000, 40)})])
    assert worse.guardrails_violated == ["u"] and worse.metrics[0].comparisons[0].outcome == "worse"
    better = assemble(e, 0, {"control": 1000, "b": 1000}, {},
                      [(UNSUB, "guardrail", {"control": sums(1000, 40), "b": sums(1000, 10)})])
    assert better.guardrails_violated == [] and better.metrics[0].comparisons[0].outcome == "better"
    assert not any("guardrail" in w for w in better.warnings)


def test_empty_variants_give_coded_empty_results_not_errors() -> None:
    e = experiment("control", "b", "c")
    result = assemble(e, 0, {}, {"holdout": 4}, [(CONVERSION, "primary", {"control": sums(10, 3)})])
    [b, c] = result.metrics[0].comparisons
    assert b.test.status == "too_few_units" and math.isnan(b.test.p_value) and b.p_holm is None
    assert c.variant == "c" and c.bayes is None and c.sequential is not None
    assert c.sequential.status == "too_few_units"
    assert result.srm is not None and not result.srm.ok and result.trustworthy
    body = orjson.loads(orjson.dumps(to_json(result)))
    assert body["metrics"][0]["comparisons"][0]["p_value"] is None and body["held_out"] == {"holdout": 4}
    assert "no exposed units yet" in body["warnings"]


def test_three_variants_get_the_chi_square_across_all() -> None:
    e = experiment("control", "b", "c")
    result = analyse(e, [(CONVERSION, "primary", {"control": sums(900, 90), "b": sums(900, 120),
                                                   "c": sums(900, 95)})])
    omnibus = result[0].omnibus
    assert omnibus is not None and omnibus[1] == 2
    scipy_stats = pytest.importorskip("scipy.stats")
    table = [[90, 810], [120, 780], [95, 805]]
    chi2, p, dof, _expected = scipy_stats.chi2_contingency(table, correction=False)
    assert dof == omnibus[1]
    assert omnibus[0] == pytest.approx(chi2, abs=1e-9) and omnibus[2] == pytest.approx(p, abs=1e-12)


def test_small_segment_cells_are_suppressed_and_never_compared() -> None:
    e = experiment("control", "b", "c")
    data = {"control": sums(500, 50), "b": sums(9, 3), "c": sums(480, 60)}
    [m] = analyse(e, [(CONVERSION, "primary", data)], min_cell_count=10)
    assert m.suppressed == ("b",) and set(m.sums) == {"control", "c"}
    assert [c.variant for c in m.comparisons] == ["c"] and m.omnibus is None
    [small_control] = analyse(e, [(CONVERSION, "primary", {**data, "control": sums(4, 1)})], min_cell_count=10)
    assert small_control.suppressed == ("b", "control") and small_control.comparisons == ()
    # Empty cells reveal nobody: they are shown as zeros.
    [empty] = analyse(e, [(CONVERSION, "primary", {**data, "b": sums(0, 0)})], min_cell_count=10)
    assert empty.suppressed == () and [c.variant for c in empty.comparisons] == ["b", "c"]
    result = assemble(e, 0, {"control": 500, "b": 9, "c": 480}, {}, [(CONVERSION, "primary", data)],
                      [("vip", [(CONVERSION, "primary", data)])], in_window={"c": {"b": 2}}, min_cell_count=10)
    assert result.metrics[0].suppressed == () and len(result.metrics[0].comparisons) == 2
    body = orjson.loads(orjson.dumps(to_json(result)))
    assert body["metrics"][0]["in_window"] == {"control": 0, "b": 2, "c": 0}
    segment = body["segments"][0]["metrics"][0]
    assert segment["suppressed"] == ["b"] and segment["variants"][1] == {"variant": "b", "suppressed": True,
                                                                         "units": None}
    assert [c["variant"] for c in segment["comparisons"]] == ["c"]
    assert any("suppressed: vip/c" in w for w in body["warnings"])
