"""Metric and Experiment documents: what each type needs, and the precise field of every error."""

from __future__ import annotations

from typing import Any

import pytest

from rapport.errors import ValidationError
from rapport.experiments.definitions import experiment_def, metric_def, split_experiments
from rapport.resources import parse_documents
from rapport.resources.builtin.experiment import reference_problems
from rapport.types import DAY


def errors(text: str) -> list[tuple[str, str]]:
    """(field, expected) of every error of the documents, or [] when they are valid."""
    try:
        parse_documents(text)
    except ValidationError as exc:
        return [(str(d["field"]), str(d["expected"])) for d in exc.details]
    return []


def spec(text: str) -> dict[str, Any]:
    [resource] = parse_documents(text)
    return dict(resource.spec)


@pytest.mark.parametrize("body", [
    "type: conversion\nevent: Order Completed\nwindow: 7d",
    "type: conversion\nevent: Order Completed\nwindow: 7d\nwhere: event.revenue > 50",
    "type: revenue\nevent: Order Completed\nproperty: revenue\nwindow: 7d",
    "type: count\nevent: Page Viewed\nwindow: 1d",
    "type: retention\nday: 7",
    "type: retention\nday: 90\nevent: Order Completed",
    "type: ratio\nnumerator: {event: Email Link Clicked}\ndenominator: {event: Email Delivered}\nwindow: 3d",
    "type: ratio\nnumerator: {event: Order Completed, property: revenue}\ndenominator: {event: Session}\nwindow: 3d",
    "type: conversion\nevent: Unsubscribed\nwindow: 7d\ndirection: decrease\nmin_detectable_effect: 0.05",
])
def test_valid_metrics(body: str) -> None:
    assert errors(f"kind: Metric\nname: m\n{body}\n") == []


@pytest.mark.parametrize(("body", "field", "expected"), [
    ("type: conversion\nwindow: 7d", "event", "an event name"),
    ("type: conversion\nevent: A", "window", "a duration"),
    ("type: revenue\nevent: A\nwindow: 7d", "property", "an event property"),
    ("type: retention", "day", "a whole number of days"),
    ("type: retention\nday: 0", "day", "a whole number of at least 1"),
    ("type: ratio\nwindow: 1d\ndenominator: {event: B}", "numerator", "a mapping {event"),
    ("type: ratio\nwindow: 1d\nnumerator: {property: x}\ndenominator: {event: B}", "numerator.event", "an event"),
    ("type: count\nevent: A\nwindow: 1d\nday: 3", "day", "no 'day' with type 'count'"),
    ("type: conversion\nevent: A\nwindow: 1d\nproperty: revenue", "property", "no 'property'"),
    ("type: conversion\nevent: A\nwindow: 7 days", "window", "a duration"),
    ("type: conversions\nevent: A\nwindow: 1d", "type", "one of 'conversion'"),
    ("type: conversion\nevent: A\nwindow: 1d\ndirection: up", "direction", "one of 'increase', 'decrease'"),
    ("type: conversion\nevent: A\nwindow: 1d\nwhere: traits.plan == 'x'", "where", "a rule over the event"),
])
def test_invalid_metrics_name_the_field_and_what_was_expected(body: str, field: str, expected: str) -> None:
    found = errors(f"kind: Metric\nname: m\n{body}\n")
    assert any(f == field and expected in e for f, e in found), found


def test_metric_definitions_count_from_first_exposure() -> None:
    conversion = metric_def(spec("kind: Metric\nname: c\ntype: conversion\nevent: A\nwindow: 7d\n"))
    assert (conversion.start, conversion.end, conversion.value.exists, conversion.binary) == (0, 7 * DAY, True, True)
    retention = metric_def(spec("kind: Metric\nname: r\ntype: retention\nday: 7\n"))
    assert (retention.start, retention.end, retention.value.event) == (7 * DAY, 8 * DAY, None)
    ratio = metric_def(spec("kind: Metric\nname: r\ntype: ratio\nwindow: 1d\nnumerator: {event: C}\n"
                            "denominator: {event: D, property: n}\n"))
    assert ratio.denominator is not None and (ratio.value.event, ratio.denominator.prop) == ("C", "n")


EXPERIMENT = """kind: Experiment
name: hero_test
placement: home_hero
purpose: personalization
salt: hero-2026
variants:
  control: {weight: 50}
  bold: {weight: 50, block: hero_bold}
metrics: [converted_7d]
"""


def test_the_contract_example_is_valid() -> None:
    assert errors(EXPERIMENT) == []
    parsed = spec(EXPERIMENT)
    assert (parsed["status"], parsed["holdout"], parsed["traffic"]) == ("running", 0, 100)
    assert spec(EXPERIMENT.replace("salt: hero-2026\n", ""))["salt"] == "hero_test"
    e = experiment_def(parsed, {})
    assert (e.control, [v.name for v in e.variants], e.source) == ("control", ["control", "bold"],
                                                                    "placement:home_hero")


@pytest.mark.parametrize(("change", "field", "expected"), [
    (("placement: home_hero\n", ""), "placement", "exactly one of 'placement' or 'journey'"),
    (("placement: home_hero\n", "placement: home_hero\njourney: j\nsplit: '1'\n"), "journey", "exactly one"),
    (("placement: home_hero\n", "journey: j\n"), "split", "the id of a split step"),
    (("metrics: [converted_7d]\n", "metrics: []\n"), "metrics", "Metric names"),
    (("metrics: [converted_7d]\n", ""), "metrics", "Metric names"),
    (("control: {weight: 50}", "control: {weight: 0}"), "variants.control.weight", "a positive number"),
    (("control: {weight: 50}", "control: {weight: -5}"), "variants.control.weight", "a positive number"),
    (("  bold: {weight: 50, block: hero_bold}\n", ""), "variants", "two or more variants"),
    (("salt: hero-2026\n", "salt: hero-2026\nholdout: 120\n"), "holdout", "a percentage from 0 to 100"),
    (("salt: hero-2026\n", "salt: hero-2026\nstatus: paused\n"), "status", "one of 'running', 'stopped'"),
    (("purpose: personalization\n", ""), "purpose", "a consent purpose"),
])
def test_invalid_experiments_name_the_field(change: tuple[str, str], field: str, expected: str) -> None:
    old, new = change
    assert old in EXPERIMENT
    found = errors(EXPERIMENT.replace(old, new))
    assert any(f == field and expected in e for f, e in found), found


JOURNEY: dict[str, Any] = {
    "kind": "Journey", "name": "cart", "purpose": "marketing_email", "entry": {"event": "Cart Added"},
    "steps": [{"delay": "1h"}, {"split": {"holdout": 10, "paths": {
        "a": {"weight": 30, "steps": [{"update_trait": {"name": "arm", "value": "a"}}]},
        "b": {"weight": 70, "steps": [{"update_trait": {"name": "arm", "value": "b"}}]}}}}]}


def _specs(experiment: dict[str, Any], **more: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {("Experiment", str(experiment["name"])): experiment, ("Journey", "cart"): JOURNEY,
           ("Metric", "converted_7d"): {"name": "converted_7d"}, ("Segment", "vip"): {"name": "vip"}}
    out.update({("Placement", name): body for name, body in more.items()})
    return out


def problems(experiment: dict[str, Any], **more: dict[str, Any]) -> list[tuple[str, str]]:
    return [(field, message) for _k, _n, field, message in reference_problems(_specs(experiment, **more))]


def test_a_journey_experiment_takes_the_splits_paths_and_weights() -> None:
    e = {"name": "cart_test", "journey": "cart", "split": "1", "purpose": "marketing_email",
         "metrics": ["converted_7d"], "segments": ["vip"]}
    assert problems(e) == []
    built = experiment_def(e, {"Journey": {"cart": JOURNEY}})
    # The split's 10 % holdout is an arm of its own, and the control; the paths share the other 90 %.
    assert [(v.name, v.weight) for v in built.variants] == [("holdout", 10.0), ("a", 27.0), ("b", 63.0)]
    assert (built.control, built.source, built.holdout_arm) == ("holdout", "journey:cart/1", True)
    paths = {"a": {"weight": 30, "steps": [{"exit": "done"}]}, "b": {"weight": 70, "steps": [{"exit": "done"}]}}
    no_holdout = {**JOURNEY, "steps": [{"split": {"paths": paths}}]}
    built = experiment_def({**e, "split": "0"}, {"Journey": {"cart": no_holdout}})
    assert [(v.name, v.weight) for v in built.variants] == [("a", 30.0), ("b", 70.0)]
    assert (built.control, built.holdout_arm) == ("a", False)
    assert split_experiments({"Experiment": {"cart_test": e}}) == {("cart", "1"): "cart_test"}


def test_cross_checks_name_each_missing_reference() -> None:
    e = {"name": "x", "journey": "cart", "split": "0", "purpose": "nope", "metrics": ["converted_7d", "ctr"],
         "guardrails": ["unsub"], "segments": ["vips"]}
    found = dict(problems(e))
    assert "has no split step '0'; its split steps: '1'" in found["split"]
    assert found["metrics[1]"].startswith("unknown metric 'ctr'")
    assert found["guardrails[0]"].startswith("unknown metric 'unsub'")
    assert found["segments[0]"] == "unknown segment 'vips' (did you mean 'vip'?)"
    assert found["purpose"].startswith("unknown consent purpose 'nope'")
    wrong_paths = {**e, "split": "1", "purpose": "marketing_email", "metrics": ["converted_7d"], "guardrails": [],
                   "segments": [], "variants": {"a": {"weight": 1}, "c": {"weight": 1}}}
    assert [f for f, _ in problems(wrong_paths)] == ["variants"]
    placement = {"name": "p", "placement": "home", "purpose": "personalization", "metrics": ["converted_7d"],
                 "variants": {"control": {"weight": 1}, "b": {"weight": 1, "block": "b1"}}}
    assert [f for f, _ in problems(placement)] == ["placement", "variants.b.block"]
    specs = {**_specs(placement), ("Placement", "home"): {"name": "home"}, ("ContentBlock", "b1"): {"name": "b1"}}
    assert list(reference_problems(specs)) == []


def test_an_experiment_needs_a_purpose_that_needs_consent() -> None:
    [(field, expected)] = errors(EXPERIMENT.replace("purpose: personalization", "purpose: necessary"))
    assert field == "purpose" and expected.startswith("a consent purpose that needs the person's consent")
    placement = {"name": "p", "placement": "home", "purpose": "service_quality", "metrics": ["converted_7d"],
                 "variants": {"control": {"weight": 1}, "b": {"weight": 1}}}
    specs = {**_specs(placement), ("Placement", "home"): {"name": "home"},
             ("ConsentPurpose", "service_quality"): {"name": "service_quality", "legal_basis": "legitimate_interest"}}
    [(kind, name, field, message)] = list(reference_problems(specs))
    assert (kind, name, field) == ("Experiment", "p", "purpose")
    assert message.startswith("consent purpose 'service_quality' has legal basis 'legitimate_interest': it is "
                              "allowed without anyone's consent")
    consented = {**specs, ("ConsentPurpose", "service_quality"): {"name": "service_quality"}}
    assert list(reference_problems(consented)) == []


def test_a_journey_experiment_takes_no_when() -> None:
    journey = EXPERIMENT.replace("placement: home_hero\n", "journey: cart\nsplit: '1'\n").replace(
        "variants:\n  control: {weight: 50}\n  bold: {weight: 50, block: hero_bold}\n", "")
    assert errors(journey) == []
    assert errors(journey + "when: traits.plan == \"vip\"\n") == [("when", "no 'when' with 'journey'")]
    assert errors(EXPERIMENT + "when: traits.plan == \"vip\"\n") == []
