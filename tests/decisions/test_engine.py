"""The decision engine on plain values: rules, ranking by propensity × value, guardrails, locales, experiments,
consent fallback and the write-key view of a decision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest

from rapport.clock import parse_iso
from rapport.content.compile import Block, Candidate, ExperimentDef, Placement, RuleVariant, compile_block, locale_chain
from rapport.decisions.engine import BlockContext, Person, decide, experiment_gate
from rapport.experiments.assign import Assignment, Variant
from rapport.models.score import Reason, Scored
from rapport.rules import DictContext, parse
from rapport.types import DAY, Millis

NOW: Millis = parse_iso("2026-03-02T10:00:00Z")


def block(name: str, **spec: Any) -> Block:
    return compile_block({"kind": "ContentBlock", "name": name, "channel": "web", "body": f"<p>{name}</p>", **spec})


BLOCKS = {b.name: b for b in (
    block("hero_default"), block("hero_vip", body="<p>Hi {{ traits.first_name }}</p>"), block("hero_new"),
    block("hero_bold"), block("sofa", products=["sofa-1"], value=300), block("lamp", value=40),
    block("rug", value=100), block("news", cap={"count": 2, "per": "7d"}),
    block("spring", valid_from="2026-03-10T00:00:00Z"), block("winter", valid_until="2026-03-01T00:00:00Z"),
    block("adults", when="traits.age >= 18"),
)}


def person(*, traits: Mapping[str, object] | None = None, computed: Mapping[str, object] | None = None,
           context: Mapping[str, object] | None = None, allowed: Sequence[str] = ("personalization",),
           impressions: Mapping[str, Sequence[Millis]] | None = None, owned: Sequence[str] = (),
           known: bool = True) -> Person:
    values = {"traits": dict(traits or {}), "computed": dict(computed or {}), "context": dict(context or {})}
    render = BlockContext(traits=dict(traits or {}), computed=dict(computed or {}), request=dict(context or {}))
    return Person(DictContext(values, NOW), render, frozenset(allowed), known, impressions or {}, frozenset(owned))


def rules(*pairs: tuple[str, str]) -> Placement:
    return Placement("home_hero", "web", "personalization", "hero_default",
                     variants=tuple(RuleVariant(b, parse(text), text) for b, text in pairs))


@dataclass(frozen=True)
class FakeModel:
    """A scoring model whose probability is a fixed function of one computed trait."""

    name: str
    version: int
    features: tuple[str, ...]
    base: float

    def score(self, values: Mapping[str, float | None]) -> Scored:
        return Scored(self.probability(values),
                      (Reason(self.features[0], values.get(self.features[0]), 0.4), Reason("other", None, -0.1)))

    def probability(self, values: Mapping[str, float | None]) -> float:
        boost = 0.0 if values.get(self.features[0]) is None else 0.1
        return min(1.0, self.base + boost)


HERO = rules(("hero_vip", "computed.revenue_total > 100"), ("hero_new", 'count("Order Completed") == 0'),
             ("hero_bold", 'context.page == "sale"'))


def test_the_first_matching_rule_wins() -> None:
    decision = decide(HERO, BLOCKS, person(traits={"first_name": "Ada"}, computed={"revenue_total": 150},
                                           context={"page": "sale"}), now=NOW)
    assert (decision.block, decision.reason.kind, decision.reason.variant_index) == ("hero_vip", "rule", 0)
    assert decision.content == {"body": "<p>Hi Ada</p>"} and decision.confidence == 1.0
    sale = decide(HERO, BLOCKS, person(computed={"revenue_total": 5}, context={"page": "sale"}), now=NOW)
    assert (sale.block, sale.reason.rule) == ("hero_bold", 'context.page == "sale"')
    nothing = decide(HERO, BLOCKS, person(computed={"revenue_total": 5}), now=NOW)
    assert (nothing.block, nothing.reason.kind) == ("hero_default", "default")


def test_values_printed_into_html_blocks_are_escaped() -> None:
    decision = decide(HERO, BLOCKS, person(traits={"first_name": "<script>x</script>"},
                                           computed={"revenue_total": 150}), now=NOW)
    assert decision.content == {"body": "<p>Hi &lt;script&gt;x&lt;/script&gt;</p>"}


def test_without_consent_the_default_shows_without_personal_data() -> None:
    decision = decide(rules(("hero_vip", "computed.revenue_total > 100")),
                      {**BLOCKS, "hero_default": block("hero_default", body="Hi {{ traits.first_name }}")},
                      person(traits={"first_name": "Ada"}, computed={"revenue_total": 150}, allowed=()), now=NOW)
    assert (decision.block, decision.reason.kind, decision.content) == ("hero_default", "consent_fallback",
                                                                        {"body": "Hi "})


@pytest.mark.parametrize(("name", "why"), [
    ("spring", "outside_validity"), ("winter", "outside_validity"), ("adults", "not_eligible"),
    ("sofa", "already_bought_or_returned"), ("news", "cap_reached"),
])
def test_guardrails_drop_a_matching_block(name: str, why: str) -> None:
    placement = rules((name, "computed.revenue_total >= 0"))
    who = person(traits={"age": 16}, computed={"revenue_total": 1}, owned=["sofa-1"],
                 impressions={"news": [NOW - DAY, NOW - 2 * DAY, NOW - 30 * DAY]})
    decision = decide(placement, BLOCKS, who, now=NOW)
    assert decision.block == "hero_default"
    assert [(d.block, d.why) for d in decision.guardrails] == [(name, why)]


def test_caps_count_only_the_window_and_validity_opens_in_time() -> None:
    placement = rules(("news", "computed.revenue_total >= 0"), ("spring", "computed.revenue_total >= 0"))
    who = person(computed={"revenue_total": 1}, impressions={"news": [NOW - DAY, NOW - 8 * DAY]})
    assert decide(placement, BLOCKS, who, now=NOW).block == "news"
    capped = person(computed={"revenue_total": 1}, impressions={"news": [NOW - DAY, NOW - 2 * DAY]})
    assert decide(placement, BLOCKS, capped, now=NOW).block == "hero_default"
    assert decide(placement, BLOCKS, capped, now=NOW + 5 * DAY - 1).block == "hero_default"
    assert decide(placement, BLOCKS, capped, now=NOW + 5 * DAY).block == "news"  # one is 7 days old: out
    later = rules(("spring", "computed.revenue_total >= 0"))
    opens = parse_iso("2026-03-10T00:00:00Z")
    assert decide(later, BLOCKS, capped, now=opens - 1).block == "hero_default"
    assert decide(later, BLOCKS, capped, now=opens).block == "spring"


def test_offers_rank_by_propensity_times_value() -> None:
    placement = Placement("offers", "web", "personalization", "hero_default", rank=(
        Candidate("lamp", "m_lamp"), Candidate("rug", "m_rug"), Candidate("sofa", "m_sofa"),
        Candidate("hero_bold", "m_bold", value=10.0)))
    models = {"m_lamp": FakeModel("m_lamp", 3, ("orders_90d",), 0.5),   # 0.6 × 40 = 24
              "m_rug": FakeModel("m_rug", 1, ("orders_90d",), 0.2),     # 0.3 × 100 = 30
              "m_sofa": FakeModel("m_sofa", 2, ("orders_90d",), 0.05),  # 0.15 × 300 = 45
              "m_bold": FakeModel("m_bold", 1, ("orders_90d",), 0.9)}   # 1.0 × 10 = 10
    who = person(computed={"orders_90d": 4})
    decision = decide(placement, BLOCKS, who, now=NOW, models=models)
    assert decision.block == "sofa" and decision.reason.kind == "rank"
    assert decision.reason.model == "m_sofa" and decision.reason.model_version == 2
    assert decision.confidence == pytest.approx(0.15) and decision.reason.expected_value == pytest.approx(45)
    assert decision.reason.top_reasons[0] == {"feature": "orders_90d", "value": 4.0, "contribution": 0.4}
    owner = decide(placement, BLOCKS, person(computed={"orders_90d": 4}, owned=["sofa-1"]), now=NOW, models=models)
    assert owner.block == "rug" and ("sofa", "already_bought_or_returned") in [
        (d.block, d.why) for d in owner.guardrails]
    untrained = decide(placement, BLOCKS, who, now=NOW, models={})
    assert untrained.block == "hero_default" and {d.why for d in untrained.guardrails} == {"model_unavailable"}


@pytest.mark.parametrize(("requested", "expected"), [
    ("de-AT", "Servus"), ("de-at", "Servus"), ("de-CH", "Hallo"), ("de", "Hallo"), ("en-US", "Hello"),
    ("fr", "Hello"), (None, "Hello"), ("en", "Hello"),
])
def test_locale_fallback(requested: str | None, expected: str) -> None:
    greeting = block("greeting", locale="en", body="Hello", locales={"de": {"body": "Hallo"},
                                                                     "de-AT": {"body": "Servus"}})
    placement = Placement("hello", "web", "personalization", "greeting")
    decision = decide(placement, {"greeting": greeting}, person(), now=NOW, locale_chain=locale_chain(requested))
    assert decision.content == {"body": expected}


def test_the_locale_chain() -> None:
    assert locale_chain("de-AT") == ("de-at", "de")
    assert locale_chain("zh_Hant_TW") == ("zh-hant-tw", "zh-hant", "zh")
    assert locale_chain("") == ()


EXPERIMENT = ExperimentDef("hero_test", "hero-2026", "personalization", True,
                           (Variant("control", 50), Variant("bold", 50)), {"control": None, "bold": "hero_bold"},
                           "control", when=parse('context.country == "DE"'), when_text='context.country == "DE"')


def test_an_experiment_serves_its_variant_and_the_control_keeps_the_own_choice() -> None:
    placement = Placement("home_hero", "web", "personalization", "hero_default",
                          variants=HERO.variants, experiments=(EXPERIMENT,))
    who = person(computed={"revenue_total": 150}, traits={"first_name": "Ada"}, context={"country": "DE"})
    bold = decide(placement, BLOCKS, who, now=NOW, assignments={"hero_test": Assignment(1, "bold", "variant")})
    assert (bold.block, bold.reason.kind, bold.reason.variant) == ("hero_bold", "experiment", "bold")
    assert bold.exposure is not None and bold.exposure.variant == "bold"
    control = decide(placement, BLOCKS, who, now=NOW,
                     assignments={"hero_test": Assignment(9000, "control", "variant")})
    assert (control.block, control.reason.kind, control.reason.variant) == ("hero_vip", "rule", "control")
    held = decide(placement, BLOCKS, who, now=NOW, assignments={"hero_test": Assignment(3, None, "holdout")})
    assert held.block == "hero_vip" and held.exposure is not None and held.exposure.variant is None
    assert bold.to_json(full=False)["reason"] == {"kind": "experiment", "experiment": "hero_test", "variant": "bold"}


@pytest.mark.parametrize(("who", "why"), [
    (person(context={"country": "FR"}), "not_targeted"),
    (person(context={"country": "DE"}, allowed=("analytics",)), "no_consent"),
    (person(context={"country": "DE"}, known=False), "unknown_person"),
])
def test_people_outside_an_experiment_get_the_control_unassigned(who: Person, why: str) -> None:
    assert experiment_gate(EXPERIMENT, who) == why
    stopped = replace(EXPERIMENT, running=False)
    assert experiment_gate(stopped, person(context={"country": "DE"})) == "stopped"


def test_the_write_key_view_holds_no_details() -> None:
    decision = decide(HERO, BLOCKS, person(computed={"revenue_total": 150}), now=NOW)
    assert decision.to_json(full=False) == {"placement": "home_hero", "block": "hero_vip",
                                            "content": {"body": "<p>Hi </p>"}, "reason": {"kind": "rule"}}
    full = decision.to_json(full=True)
    assert full["reason"]["rule"] == "computed.revenue_total > 100" and full["confidence"] == 1.0


def test_nothing_is_shown_when_even_the_default_is_out_of_its_window() -> None:
    placement = Placement("seasonal", "web", "personalization", "winter")
    decision = decide(placement, BLOCKS, person(), now=NOW)
    assert (decision.block, decision.reason.kind, decision.confidence) == (None, "not_eligible", 0.0)
    assert decision.to_json(full=False)["content"] is None


def test_people_outside_the_traffic_share_are_not_in_the_experiment() -> None:
    placement = Placement("home_hero", "web", "personalization", "hero_default",
                          variants=HERO.variants, experiments=(EXPERIMENT,))
    who = person(computed={"revenue_total": 150}, context={"country": "DE"})
    decision = decide(placement, BLOCKS, who, now=NOW, assignments={"hero_test": Assignment(7, None, "excluded")})
    assert (decision.block, decision.exposure) == ("hero_vip", None)
    assert decision.to_json(full=False)["reason"] == {"kind": "rule"}
    assert decision.reason.skipped_experiments == ({"experiment": "hero_test", "why": "excluded"},)


def test_an_offer_is_scored_only_with_its_models_purpose_and_in_its_audience() -> None:
    placement = Placement("offers", "web", "personalization", "hero_default", rank=(
        Candidate("sofa", "m_sofa", purpose="analytics"),
        Candidate("rug", "m_rug", purpose="personalization", audience=parse("computed.orders_90d >= 5"),
                  audience_text="computed.orders_90d >= 5"),
        Candidate("lamp", "m_lamp", purpose="personalization")))
    models = {"m_sofa": FakeModel("m_sofa", 1, ("orders_90d",), 0.5),   # 0.6 × 300 = 180
              "m_rug": FakeModel("m_rug", 1, ("orders_90d",), 0.5),     # 0.6 × 100 = 60
              "m_lamp": FakeModel("m_lamp", 1, ("orders_90d",), 0.1)}   # 0.2 × 40 = 8
    both = decide(placement, BLOCKS, person(computed={"orders_90d": 5}, allowed=("personalization", "analytics")),
                  now=NOW, models=models)
    assert both.block == "sofa"
    no_analytics = decide(placement, BLOCKS, person(computed={"orders_90d": 5}), now=NOW, models=models)
    assert no_analytics.block == "rug"
    assert [(d.block, d.why) for d in no_analytics.guardrails] == [("sofa", "no_consent")]
    outside = decide(placement, BLOCKS, person(computed={"orders_90d": 4}), now=NOW, models=models)
    assert outside.block == "lamp"
    assert [(d.block, d.why) for d in outside.guardrails] == [("sofa", "no_consent"), ("rug", "not_in_audience")]
    assert "computed.orders_90d >= 5" in outside.guardrails[1].detail


def test_the_write_key_view_does_not_tell_a_consent_fallback_from_a_default() -> None:
    placement = rules(("hero_vip", "computed.revenue_total > 100"))
    fallback = decide(placement, BLOCKS, person(computed={"revenue_total": 150}, allowed=()), now=NOW)
    default = decide(placement, BLOCKS, person(computed={"revenue_total": 5}), now=NOW)
    assert (fallback.reason.kind, default.reason.kind) == ("consent_fallback", "default")
    assert fallback.to_json(full=False) == default.to_json(full=False)
    assert fallback.to_json(full=False)["reason"] == {"kind": "default"}
    assert fallback.to_json(full=True)["reason"]["kind"] == "consent_fallback"
