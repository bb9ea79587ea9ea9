"""The Model kind: its fields, its references to computed traits and purposes, and the demo's models."""

from __future__ import annotations

from importlib import resources as package_files
from typing import Any

import pytest

from rapport.errors import ValidationError
from rapport.models.spec import ModelSpec, score_series
from rapport.resources import parse_documents
from rapport.resources.builtin.model import reference_problems
from rapport.types import DAY
from rapport.workspaces.runtime import build_runtime

BASE = "kind: Model\nname: churn\ntarget: {event: Order Completed, within: 60d, negate: true}\n"
TRAITS = "kind: ComputedTrait\nname: cart_adds_30d\nevent: Cart Added\naggregate: count\nwindow: 30d\n"


def errors(text: str) -> list[tuple[str, str]]:
    """(field, message) of every error of the documents, or [] when they are valid."""
    try:
        parse_documents(text)
    except ValidationError as exc:
        return [(str(d["field"]), str(d["message"])) for d in exc.details]
    return []


def problems(text: str) -> list[tuple[str, str]]:
    """(field, message) of each broken reference once the documents are applied together."""
    specs = {(r.kind, r.name): dict(r.spec) for r in parse_documents(text)}
    return [(field, message) for _kind, _name, field, message in reference_problems(specs)]


def test_a_complete_model_is_valid_and_compiles() -> None:
    text = BASE + ("description: x\naudience: computed.order_count >= 1\nfeatures: [orders_90d, cart_adds_30d]\n"
                   "algorithm: logistic_regression\nwrite_to: churn_propensity\npurpose: analytics\n")
    [resource] = parse_documents(text)
    spec = ModelSpec.from_spec(resource.spec)
    assert spec.target.within_ms == 60 * DAY and spec.target.negate
    assert spec.features == ("orders_90d", "cart_adds_30d") and spec.write_to == "churn_propensity"
    assert problems(text + "---\n" + TRAITS) == []


def test_defaults() -> None:
    [resource] = parse_documents("kind: Model\nname: m\ntarget: {event: Signup, within: 7d}\nfeatures: [orders_90d]\n")
    assert resource.spec["algorithm"] == "logistic_regression" and resource.spec["purpose"] == "analytics"
    assert resource.spec["target"]["negate"] is False


@pytest.mark.parametrize(("body", "field", "words"), [
    ("features: []\n", "features", "non-empty list"),
    ("features: [orders_90d, orders_90d]\n", "features[1]", "duplicate"),
    ("features: [orders_90d]\nalgorithm: gradient_boosting\n", "algorithm", "plain numbers"),
    ("features: [orders_90d]\nalgorithm: logistic_regresion\n", "algorithm", "did you mean 'logistic_regression'"),
    ("features: [orders_90d]\nwrite_to: Churn Score\n", "write_to", "lower-case"),
    ("features: [orders_90d]\ncolour: red\n", "colour", "unknown field"),
], ids=["empty-features", "duplicate-feature", "gradient-boosting", "near-miss-algorithm", "bad-write-to",
        "unknown-field"])
def test_field_errors_name_the_field(body: str, field: str, words: str) -> None:
    found = errors(BASE + body)
    assert any(f == field and words in m for f, m in found), found


def test_target_needs_an_event_filter_where() -> None:
    found = errors("kind: Model\nname: m\nfeatures: [orders_90d]\n"
                   "target: {event: Order Completed, within: 7d, where: traits.plan == 'pro'}\n")
    assert any(f == "target.where" and "may only read event" in m for f, m in found), found


def test_an_unknown_feature_suggests_the_nearest_trait() -> None:
    found = problems(BASE + "features: [orders_90day, cart_add_30d]\n---\n" + TRAITS)
    assert found == [("features[0]", "unknown computed trait 'orders_90day' (did you mean 'orders_90d'?)"),
                     ("features[1]", "unknown computed trait 'cart_add_30d' (did you mean 'cart_adds_30d'?)")]


@pytest.mark.parametrize(("extra", "field", "words"), [
    ("write_to: orders_90d\n", "write_to", "existing computed trait"),
    ("write_to: cart_adds_30d\n", "write_to", "existing computed trait"),
    ("purpose: analytic\n", "purpose", "did you mean 'analytics'"),
    ("audience: computed.order_cnt > 1\n", "audience", "did you mean 'order_count'"),
], ids=["builtin-name", "trait-name", "purpose", "audience"])
def test_references_are_checked(extra: str, field: str, words: str) -> None:
    found = problems(BASE + "features: [orders_90d]\n" + extra + "---\n" + TRAITS)
    assert any(f == field and words in m for f, m in found), found


def test_scores_of_one_model_can_feed_another_but_not_itself() -> None:
    other = "---\nkind: Model\nname: second\ntarget: {event: Order Completed, within: 7d}\nfeatures: [churn_p]\n"
    assert problems(BASE + "features: [orders_90d]\nwrite_to: churn_p\n" + other) == []
    assert problems(BASE + "features: [churn_p]\nwrite_to: churn_p\n") == [
        ("features[0]", "feature 'churn_p' is this model's own score")]
    twice = other.replace("features: [churn_p]", "features: [orders_90d]\nwrite_to: churn_p")
    assert [f for f, _ in problems(BASE + "features: [orders_90d]\nwrite_to: churn_p\n" + twice)] == [
        "write_to", "write_to"]


def test_write_to_becomes_a_computed_trait_that_no_event_feeds() -> None:
    [resource] = parse_documents(BASE + "features: [orders_90d]\nwrite_to: churn_p\npurpose: analytics\n")
    rt = build_runtime(("ws_1", "shop", 0, b"k", "{}"), 1, [("Model", dict(resource.spec), 1)])
    trait = rt.traits["churn_p"]
    assert trait.aggregate == "last" and trait.series == score_series("churn") and trait.purpose == "analytics"
    assert trait.series.id not in rt.series


def demo_text() -> str:
    folder = package_files.files("rapport.demo") / "resources"
    return "\n---\n".join(f.read_text(encoding="utf-8") for f in sorted(folder.iterdir(), key=lambda f: f.name)
                          if f.name.endswith(".yaml"))


def test_the_demo_models_apply_against_the_demo_traits() -> None:
    resources = parse_documents(demo_text())
    specs: dict[tuple[str, str], Any] = {(r.kind, r.name): dict(r.spec) for r in resources}
    assert {name for kind, name in specs if kind == "Model"} == {"churn", "conversion"}
    assert list(reference_problems(specs)) == []
    churn = ModelSpec.from_spec(specs[("Model", "churn")])
    assert churn.target.negate and churn.target.within_ms == 60 * DAY and churn.write_to == "churn_propensity"
    conversion = ModelSpec.from_spec(specs[("Model", "conversion")])
    assert not conversion.target.negate and conversion.target.within_ms == 14 * DAY
