"""Experiment results from the store, on SQLite and PostgreSQL: a seeded simulated experiment sent through the real
ingestion pipeline must give exactly the sufficient statistics, and so exactly the p-values, that the statistics
engine gives on sums computed in Python from the same synthetic data."""

from __future__ import annotations

import math
from typing import Any

import pytest
from api.support import NOW, ApiClient, apply_yaml

from experiments.support import (
    RESOURCES,
    WITH_HOLDOUT,
    Event,
    Unit,
    browse_anonymously,
    expected_sums,
    expose,
    ingest,
    sign_in,
    simulate,
    vip_members,
)
from rapport.core import NewWorkspace, Rapport
from rapport.experiments import definitions, service
from rapport.experiments.results import ExperimentResults, MetricResult, Sums, analyse
from rapport.storage.sql import exposures as exposures_sql
from rapport.types import DAY, WorkspaceId


def setup(rapport: Rapport, client: ApiClient, workspace: NewWorkspace) -> tuple[list[Unit], set[str]]:
    response = apply_yaml(client, workspace, RESOURCES)
    assert response.status_code == 200, response.text
    units = simulate()
    merged = units[3]
    browse_anonymously(client, workspace, merged, [
        Event("Order Completed", merged.first_at + DAY, {"revenue": 40}),
        Event("Email Delivered", merged.first_at + 2 * DAY), Event("Email Link Clicked", merged.first_at + 2 * DAY)])
    ingest(client, workspace, units)
    expose(rapport, workspace, units)
    members = vip_members(rapport, workspace, units)
    sign_in(client, workspace, merged)
    return units, members


def results_at(rapport: Rapport, workspace: NewWorkspace, now: int = NOW) -> ExperimentResults:
    rt = rapport.runtime(WorkspaceId(workspace.workspace_id), fresh=True)
    return rapport.db.read(lambda c: service.results(c, rt, "checkout_test", now))


def same(a: float | None, b: float | None) -> bool:
    return a == b or (a is not None and b is not None and math.isnan(a) and math.isnan(b))


def assert_same_statistics(found: tuple[MetricResult, ...], expected: tuple[MetricResult, ...]) -> None:
    assert [m.metric.name for m in found] == [m.metric.name for m in expected]
    for got, want in zip(found, expected, strict=True):
        for c, w in zip(got.comparisons, want.comparisons, strict=True):
            pairs: list[tuple[Any, Any]] = [(c.test.p_value, w.test.p_value), (c.p_holm, w.p_holm),
                                            (c.p_bh, w.p_bh), (c.test.estimate, w.test.estimate),
                                            (c.test.lift_ci_low, w.test.lift_ci_low)]
            if w.cuped is not None:
                assert c.cuped is not None
                pairs.append((c.cuped.p_value, w.cuped.p_value))
            if w.sequential is not None:
                assert c.sequential is not None
                pairs.append((c.sequential.p_value, w.sequential.p_value))
            if w.bayes is not None:
                assert c.bayes is not None
                pairs.append((c.bayes.chance_to_beat_control, w.bayes.chance_to_beat_control))
            assert all(same(a, b) for a, b in pairs), (got.metric.name, pairs)
            assert (c.outcome, c.guardrail_violated) == (w.outcome, w.guardrail_violated)


def test_results_equal_the_engine_on_sums_computed_from_the_synthetic_data(
        rapport: Rapport, client: ApiClient, workspace: NewWorkspace) -> None:
    units, members = setup(rapport, client, workspace)
    results = results_at(rapport, workspace)
    names = [m.metric.name for m in results.metrics]
    assert names == ["converted_7d", "revenue_7d", "orders_7d", "retained_d7", "ctr", "big_order_7d",
                     "unsubscribed_7d"]
    for metric in results.metrics:
        assert dict(metric.sums) == expected_sums(units, metric.metric.name), metric.metric.name
    rt = rapport.runtime(WorkspaceId(workspace.workspace_id))
    experiment = definitions.experiment(rt.specs, "checkout_test")
    defs = definitions.metrics(rt.specs)
    expected = analyse(experiment, [(m.metric, m.role, expected_sums(units, m.metric.name)) for m in results.metrics])
    assert_same_statistics(results.metrics, expected)
    assert [m.role for m in results.metrics] == ["primary", *["secondary"] * 5, "guardrail"]
    assert results.units == {"control": sum(u.variant == "control" for u in units),
                             "bold": sum(u.variant == "bold" for u in units)}
    assert results.trustworthy and results.srm is not None and not results.srm.mismatch

    # The guardrail: bold makes many more people unsubscribe, significantly, and is flagged for it.
    [unsubscribed] = [m for m in results.metrics if m.metric.name == "unsubscribed_7d"]
    [bold] = unsubscribed.comparisons
    assert bold.test.estimate > 0 and bold.test.p_value < 0.05 and bold.guardrail_violated
    assert results.guardrails_violated == ["unsubscribed_7d"]
    assert any("guardrail" in w for w in results.warnings)

    # Per segment: the units that were VIPs at their first exposure only.
    [vip] = results.segments
    assert vip.segment == "vip"
    for metric in vip.metrics:
        assert dict(metric.sums) == expected_sums(units, metric.metric.name, members=members), metric.metric.name
    assert sum(s.n for s in vip.metrics[0].sums.values()) == len(members) > 0
    expected_vip = analyse(experiment, [(m.metric, m.role, expected_sums(units, m.metric.name, members=members))
                                        for m in vip.metrics])
    assert_same_statistics(vip.metrics, expected_vip)
    assert set(defs) >= set(names)


def one_unit(results: ExperimentResults, metric: str, variant: str) -> Sums:
    [found] = [m for m in results.metrics if m.metric.name == metric]
    return found.sums[variant]


def test_windows_merges_and_consent_decide_what_counts(
        rapport: Rapport, client: ApiClient, workspace: NewWorkspace) -> None:
    apply_yaml(client, workspace, RESOURCES)
    edge_in, edge_out, merged, unconsented = (
        Unit("in", "control", NOW - 20 * DAY, 0, [Event(None, NOW - 40 * DAY),
                                                  Event("Order Completed", NOW - 13 * DAY - 1, {"revenue": 7})]),
        Unit("out", "bold", NOW - 20 * DAY, 1, [Event(None, NOW - 40 * DAY),
                                                Event("Order Completed", NOW - 13 * DAY, {"revenue": 9}),
                                                Event("Order Completed", NOW - 20 * DAY - 1, {"revenue": 5})]),
        Unit("merged", "control", NOW - 20 * DAY, 2, [Event(None, NOW - 40 * DAY)]),
        Unit("quiet", "bold", NOW - 20 * DAY, 3, [Event(None, NOW - 40 * DAY),
                                                  Event("Order Completed", NOW - 19 * DAY, {"revenue": 3})],
             consented=False))
    browse_anonymously(client, workspace, merged, [Event("Order Completed", NOW - 18 * DAY, {"revenue": 20})])
    ingest(client, workspace, [edge_in, edge_out, merged, unconsented])
    expose(rapport, workspace, [edge_in, edge_out, merged, unconsented])
    before = results_at(rapport, workspace)
    sign_in(client, workspace, merged)
    after = results_at(rapport, workspace)
    # "in" ordered 1 ms before its 7-day window closed: counted; "out" exactly at its close and 1 ms before its
    # exposure: neither counted (the second is in its pre-exposure covariate instead).
    assert one_unit(after, "revenue_7d", "control") == Sums(2, 27.0, 7.0**2 + 20.0**2, 0.0, 0.0, 0.0)
    assert one_unit(after, "revenue_7d", "bold") == Sums(2, 0.0, 0.0, 5.0, 25.0, 0.0)
    # The merged person's anonymous order counts once the profiles are one; "quiet" gave no analytics consent.
    assert one_unit(before, "converted_7d", "control") == Sums(2, 1.0, 1.0, 0.0, 0.0, 0.0)
    assert one_unit(after, "converted_7d", "control") == Sums(2, 2.0, 2.0, 0.0, 0.0, 0.0)
    assert one_unit(after, "converted_7d", "bold") == Sums(2, 0.0, 0.0, 1.0, 1.0, 0.0)


def test_a_skewed_split_fails_the_sample_ratio_check_and_held_out_units_are_counted(
        rapport: Rapport, client: ApiClient, workspace: NewWorkspace) -> None:
    apply_yaml(client, workspace, RESOURCES)
    rows: list[tuple[str, str, str | None, str, str, int]] = [
        (f"p{i}", "checkout_test", "control" if i < 700 else "bold", "variant", "journey:checkout/0", NOW - DAY)
        for i in range(1000)]
    rows += [(f"h{i}", "checkout_test", None, "holdout", "journey:checkout/0", NOW - DAY) for i in range(40)]
    rapport.db.write(lambda c: exposures_sql.record_many(c, workspace.workspace_id, rows))
    results = results_at(rapport, workspace)
    assert results.units == {"control": 700, "bold": 300} and results.held_out == {"holdout": 40}
    assert results.srm is not None and results.srm.mismatch and results.srm.p_value < 0.001
    assert not results.trustworthy
    assert any("sample ratio mismatch" in w for w in results.warnings)
    # Units with no events at all count as zeros.
    assert one_unit(results, "converted_7d", "control") == Sums(700)


@pytest.mark.parametrize("skew", [0.5])
def test_a_balanced_split_passes_the_sample_ratio_check(rapport: Rapport, client: ApiClient,
                                                        workspace: NewWorkspace, skew: float) -> None:
    apply_yaml(client, workspace, RESOURCES)
    rows: list[tuple[str, str, str | None, str, str, int]] = [
        (f"p{i}", "checkout_test", "control" if i < 1000 * skew + 12 else "bold", "variant", "journey:checkout/0",
         NOW - DAY) for i in range(1000)]
    rapport.db.write(lambda c: exposures_sql.record_many(c, workspace.workspace_id, rows))
    results = results_at(rapport, workspace)
    assert results.trustworthy and results.srm is not None and results.srm.p_value > 0.001


def test_a_journey_splits_holdout_is_an_arm_of_its_own(rapport: Rapport, client: ApiClient,
                                                       workspace: NewWorkspace) -> None:
    assert apply_yaml(client, workspace, WITH_HOLDOUT).status_code == 200
    arms = ["holdout"] * 300 + ["control"] * 350 + ["bold"] * 350
    rows: list[tuple[str, str, str | None, str, str, int]] = [
        (f"p{i}", "checkout_test", None if arm == "holdout" else arm, arm if arm == "holdout" else "variant",
         "journey:checkout/0", NOW - DAY) for i, arm in enumerate(arms)]
    rapport.db.write(lambda c: exposures_sql.record_many(c, workspace.workspace_id, rows))
    results = results_at(rapport, workspace)
    assert results.experiment.control == "control"
    assert [v.name for v in results.experiment.variants] == ["holdout", "bold", "control"]
    assert results.units == {"holdout": 300, "control": 350, "bold": 350} and results.held_out == {}
    assert results.trustworthy
    assert [c.variant for c in results.metrics[0].comparisons] == ["holdout", "bold"]
    assert one_unit(results, "converted_7d", "holdout") == Sums(300)
