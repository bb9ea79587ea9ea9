"""Experiment results from the store, on SQLite and PostgreSQL: a seeded simulated experiment sent through the real
ingestion pipeline must give exactly the sufficient statistics, and so exactly the p-values, that the statistics
engine gives on sums computed in Python from the same synthetic data."""

from __future__ import annotations

import math
from typing import Any

import pytest
from api.support import NOW, ApiClient, admin, apply_yaml, profile_of

from experiments.support import (
    RESOURCES,
    WITH_HOLDOUT,
    Event,
    Unit,
    browse_anonymously,
    expected_sums,
    expose,
    grant,
    ingest,
    sign_in,
    simulate,
    vip_members,
)
from rapport.consent import unsubscribed
from rapport.core import NewWorkspace, Rapport
from rapport.experiments import definitions, service
from rapport.experiments.results import ExperimentResults, MetricResult, Sums, analyse, to_json
from rapport.storage.sql import experiments as experiments_sql
from rapport.storage.sql import exposures as exposures_sql
from rapport.storage.sql import segments as segments_sql
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
    # The unit who refused the experiment's purpose is no unit at all; the one without analytics counts as zeros.
    assert not units[4].measured and units[2].measured and not units[2].consented
    assert results.units == {"control": sum(u.variant == "control" and u.measured for u in units),
                             "bold": sum(u.variant == "bold" and u.measured for u in units)}
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
    rows = [(u, e, v, r, s, NOW - 10 * DAY) for u, e, v, r, s, _ in rows]
    rapport.db.write(lambda c: exposures_sql.record_many(c, workspace.workspace_id, rows))
    grant(rapport, workspace, [row[0] for row in rows])
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
    grant(rapport, workspace, [row[0] for row in rows])
    results = results_at(rapport, workspace)
    assert results.trustworthy and results.srm is not None and results.srm.p_value > 0.001


def test_a_journey_splits_holdout_is_an_arm_of_its_own(rapport: Rapport, client: ApiClient,
                                                       workspace: NewWorkspace) -> None:
    assert apply_yaml(client, workspace, WITH_HOLDOUT).status_code == 200
    arms = ["holdout"] * 300 + ["control"] * 350 + ["bold"] * 350
    rows: list[tuple[str, str, str | None, str, str, int]] = [
        (f"p{i}", "checkout_test", None if arm == "holdout" else arm, arm if arm == "holdout" else "variant",
         "journey:checkout/0", NOW - 10 * DAY) for i, arm in enumerate(arms)]
    rapport.db.write(lambda c: exposures_sql.record_many(c, workspace.workspace_id, rows))
    grant(rapport, workspace, [row[0] for row in rows])
    results = results_at(rapport, workspace)
    assert results.experiment.control == "control"
    assert [v.name for v in results.experiment.variants] == ["holdout", "bold", "control"]
    assert results.units == {"holdout": 300, "control": 350, "bold": 350} and results.held_out == {}
    assert results.trustworthy
    assert [c.variant for c in results.metrics[0].comparisons] == ["holdout", "bold"]
    assert one_unit(results, "converted_7d", "holdout") == Sums(300)


def exposures(rapport: Rapport, workspace: NewWorkspace, rows: list[tuple[str, str, int]]) -> None:
    """(unit, variant, first_at) exposures of checkout_test (variant '' for a split's holdout)."""
    records: list[tuple[str, str, str | None, str, str, int]] = [
        (unit, "checkout_test", variant or None, "variant" if variant else "holdout", "journey:checkout/0", at)
        for unit, variant, at in rows]
    rapport.db.write(lambda c: exposures_sql.record_many(c, workspace.workspace_id, records))


def test_one_person_is_one_unit_counted_when_they_allowed_the_purpose_at_exposure(
        rapport: Rapport, client: ApiClient, workspace: NewWorkspace) -> None:
    apply_yaml(client, workspace, RESOURCES)
    ws = workspace.workspace_id
    start = NOW - 20 * DAY
    shadowed, twice, withdrew, lapsed, refused = (
        Unit(name, "bold", start, i, [Event(None, NOW - 40 * DAY), Event("Order Completed", start + DAY,
                                                                       {"revenue": 10 + i})], measured=name != "no")
        for i, name in enumerate(("shadowed", "twice", "withdrew", "lapsed", "no")))
    for unit in (shadowed, twice):
        browse_anonymously(client, workspace, unit, [Event("Page Viewed", NOW - 45 * DAY)])
    ingest(client, workspace, [shadowed, twice, withdrew, lapsed, refused])
    anon = {u.user: str(profile_of(client, workspace, anonymous_id="anon-" + u.user)["id"]) for u in (shadowed, twice)}
    # A placement's units: each profile was assigned (bold for its own, control on the anonymous device); a merge
    # keeps the winner's assignment and shadows the other. A journey's units have no assignment: the first
    # exposed of the person counts (here its own profile, in bold, a day before the anonymous one in control).
    rapport.db.write(lambda c: [experiments_sql.insert(c, ws, pid, "checkout_test", variant, 1, "variant", start)
                                for pid, variant in ((shadowed.profile_id, "bold"), (anon["shadowed"], "control"))])
    exposures(rapport, workspace, [(shadowed.profile_id, "bold", start), (anon["shadowed"], "control", start + DAY),
                                   (twice.profile_id, "bold", start), (anon["twice"], "control", start + DAY),
                                   (withdrew.profile_id, "bold", start), (lapsed.profile_id, "bold", start),
                                   (refused.profile_id, "bold", start)])
    grant(rapport, workspace, [withdrew.profile_id], state="withdrawn", at=NOW - 5 * DAY)
    grant(rapport, workspace, [lapsed.profile_id], at=NOW - 4 * DAY, expires_at=NOW - 3 * DAY)
    before = results_at(rapport, workspace)
    # Before the merges: each profile is a unit; the refusal never counts. The person who withdrew after being
    # exposed, and the one whose later grant lapsed, allowed the purpose at their exposure: they stay (dropping
    # them would hide the people a variant drove away).
    assert (before.units, before.held_out) == ({"bold": 4, "control": 2}, {})
    sign_in(client, workspace, shadowed)
    sign_in(client, workspace, twice)
    after = results_at(rapport, workspace)
    assert (after.units, after.held_out) == ({"bold": 3, "control": 1}, {})
    converted = one_unit(after, "converted_7d", "bold"), one_unit(after, "converted_7d", "control")
    # twice, withdrew and lapsed (bold) and shadowed (control, the winner's)
    assert converted == (Sums(3, 3.0, 3.0), Sums(1, 1.0, 1.0))
    assert after.srm is not None
    # The instant of analysis does not change who counts: consent is read at each unit's first exposure.
    for at in (NOW - 6 * DAY, NOW - 3 * DAY - 1, NOW - 3 * DAY):
        assert results_at(rapport, workspace, at).units == {"bold": 3, "control": 1}


def test_a_unit_exposed_without_the_purpose_does_not_count(rapport: Rapport, client: ApiClient,
                                                           workspace: NewWorkspace) -> None:
    apply_yaml(client, workspace, RESOURCES)
    rows = [(f"c{i}", "control", NOW - 10 * DAY) for i in range(3)] + [("late", "bold", NOW - 10 * DAY)]
    exposures(rapport, workspace, rows)
    grant(rapport, workspace, [f"c{i}" for i in range(3)], at=NOW - 11 * DAY)
    # Granted only after the exposure: the exposure was not made with consent.
    grant(rapport, workspace, ["late"], at=NOW - 9 * DAY)
    assert results_at(rapport, workspace).units == {"control": 3}





def test_an_unsubscribe_through_a_link_counts_for_the_guardrail(rapport: Rapport, client: ApiClient,
                                                                 workspace: NewWorkspace) -> None:
    apply_yaml(client, workspace, RESOURCES)
    start = NOW - 20 * DAY
    exposures(rapport, workspace, [("left", "bold", start), ("stayed", "bold", start), ("late", "bold", start)])
    grant(rapport, workspace, ["left", "stayed", "late"], at=start - DAY)
    rt = rapport.runtime(WorkspaceId(workspace.workspace_id), fresh=True)
    # Opt-outs through a link are events Rapport writes itself; unlike a segment entry they are the person's act.
    rapport.db.write(lambda c: [unsubscribed.record(c, rt, unit, source="unsubscribe_link", at=at,
                                                    purpose="marketing_email")
                                for unit, at in (("left", start + DAY), ("late", start + 8 * DAY))])
    assert one_unit(results_at(rapport, workspace), "unsubscribed_7d", "bold") == Sums(3, 1.0, 1.0)


def test_units_whose_window_is_not_over_are_shown_apart(rapport: Rapport, client: ApiClient,
                                                        workspace: NewWorkspace) -> None:
    apply_yaml(client, workspace, RESOURCES)
    rows = [(f"c{i}", "control", NOW - 10 * DAY) for i in range(5)] + [(f"b{i}", "bold", NOW - 10 * DAY)
                                                                       for i in range(4)]
    rows += [("edge", "bold", NOW - 7 * DAY), ("recent", "bold", NOW - 2 * DAY), ("day8", "control", NOW - 8 * DAY)]
    exposures(rapport, workspace, rows)
    grant(rapport, workspace, [unit for unit, _, _ in rows])
    results = results_at(rapport, workspace)
    assert results.units == {"control": 6, "bold": 6}  # the sample-ratio check sees every unit
    by_name = {m.metric.name: m for m in results.metrics}
    # A 7-day window exposed exactly 7 days ago is over; two days ago it is not.
    assert {k: v.n for k, v in by_name["converted_7d"].sums.items()} == {"control": 6, "bold": 5}
    assert by_name["converted_7d"].in_window == {"bold": 1}
    # Retention on day 7 needs the eighth day over: the unit exposed 7 days ago waits too.
    assert {k: v.n for k, v in by_name["retained_d7"].sums.items()} == {"control": 6, "bold": 4}
    assert by_name["retained_d7"].in_window == {"bold": 2}
    body = to_json(results)
    assert body["metrics"][0]["in_window"] == {"control": 0, "bold": 1}
    assert any("not counted yet" in w and "retained_d7 2" in w for w in body["warnings"])


def test_segment_cells_under_the_minimum_count_are_suppressed(rapport: Rapport, client: ApiClient,
                                                              workspace: NewWorkspace) -> None:
    apply_yaml(client, workspace, RESOURCES)
    rows = [(f"c{i}", "control", NOW - 10 * DAY) for i in range(30)] + [(f"b{i}", "bold", NOW - 10 * DAY)
                                                                        for i in range(30)]
    exposures(rapport, workspace, rows)
    grant(rapport, workspace, [unit for unit, _, _ in rows])
    vip = [f"c{i}" for i in range(12)] + [f"b{i}" for i in range(3)]
    rapport.db.write(lambda c: segments_sql.enter(c, workspace.workspace_id,
                                                  [("vip", pid, 1, NOW - 20 * DAY) for pid in vip]))
    results = results_at(rapport, workspace)
    [segment] = results.segments
    for metric in segment.metrics:
        assert metric.suppressed == ("bold",) and metric.comparisons == ()
        assert set(metric.sums) == {"control"} and metric.sums["control"].n == 12
    body = to_json(results)
    cell = body["segments"][0]["metrics"][0]
    assert cell["suppressed"] == ["bold"]
    assert {"variant": "bold", "suppressed": True, "units": None} in cell["variants"]
    assert any("fewer than 10 units are suppressed" in w and "vip/converted_7d" in w for w in body["warnings"])
    assert all(not m.suppressed for m in results.metrics)  # the whole experiment's arms are not cells
    # The workspace's minimum decides.
    response = admin(client, workspace, "PATCH", "/api/v1/settings", json={"min_cell_count": 3})
    assert response.status_code == 200, response.text
    rapport.invalidate(WorkspaceId(workspace.workspace_id))
    shown = results_at(rapport, workspace).segments[0].metrics[0]
    assert shown.suppressed == () and [c.variant for c in shown.comparisons] == ["bold"]
