"""Journey documents: the DESIGN example, every validation error with its field path, references to
other resources, the step tree with its ids, re-entry, split assignment."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import time
from fractions import Fraction
from typing import Any

import pytest
import yaml

import rapport.resources.builtin.journey as journey_kind
from rapport.errors import ValidationError
from rapport.journeys.model import (
    BranchStep,
    DelayStep,
    Entry,
    ExitStep,
    Goal,
    Journey,
    Reentry,
    SendStep,
    SplitPath,
    SplitStep,
    WaitStep,
    build,
)
from rapport.journeys.split import BUCKETS, assign, bucket, choose
from rapport.resources import dump_documents, parse_documents
from rapport.rules import parse
from rapport.types import DAY, MINUTE

Errors = Callable[[str], list[dict[str, Any]]]

EXAMPLE = """\
kind: Journey
name: cart_abandonment
purpose: marketing_email
entry: {event: Cart Added}
reentry: after 7d         # never | always | after <duration>
exit_when: count("Order Completed", within=1h) >= 1   # checked on every event, even mid-delay
goal: {event: Order Completed, within: 3d}
steps:
  - wait_for:
      event: Order Completed
      correlate: cart_id    # same event.cart_id as the entry event
      timeout: 15m
      on_event: [{exit: converted}]
  - send: {channel: email, template: cart_reminder}
  - delay: 45m
  - send: {channel: push, template: cart_push}
  - delay: 23h
  - branch:
      if: consent.marketing_sms
      then: [{send: {channel: sms, template: cart_sms}}]
  - split:
      holdout: 10          # percent kept out of the rest of the journey, for measurement
      paths:
        a: {weight: 50, steps: [{send: {channel: email, template: cart_offer_10}}]}
        b: {weight: 50, steps: [{send: {channel: email, template: cart_offer_free_shipping}}]}
"""



@pytest.fixture
def errors_of() -> Errors:
    """Parse a text that must be invalid and return its error details."""

    def run(text: str) -> list[dict[str, Any]]:
        with pytest.raises(ValidationError) as caught:
            parse_documents(text)
        assert caught.value.code == "invalid_resource"
        return caught.value.details

    return run


HEAD = "kind: Journey\nname: j\npurpose: marketing_email\nentry: {event: Cart Added}\n"
SEND = "{send: {channel: email, template: t}}"


def test_design_example_validates_to_its_canonical_spec() -> None:
    [resource] = parse_documents(EXAMPLE)
    spec = resource.spec
    assert (resource.kind, resource.name) == ("Journey", "cart_abandonment")
    assert spec["priority"] == 0 and spec["reentry"] == "after 7d"
    assert spec["entry"] == {"event": "Cart Added"}
    assert spec["goal"] == {"event": "Order Completed", "within": "3d"}
    assert spec["steps"][0] == {"wait_for": {"event": "Order Completed", "correlate": "cart_id", "timeout": "15m",
                                             "on_event": [{"exit": "converted"}]}}
    assert spec["steps"][6]["split"]["paths"]["b"]["steps"] == [
        {"send": {"channel": "email", "template": "cart_offer_free_shipping"}}]
    assert parse_documents(dump_documents([resource])) == [resource]


def test_every_field_and_step_kind_validates() -> None:
    text = HEAD + """\
description: Everything a journey can say
priority: 5
reentry: always
goal: {event: Order Completed, within: 3d, where: event.revenue > 0}
quiet_hours: {start: "21:00", end: "08:00", action: drop}
steps:
  - send: {channel: email, template: t, tags: [promo, cart]}
  - delay: {until: "09:00"}
  - update_trait: {name: last_nudge, value: {step: 2}}
  - webhook: {channel: crm_hook}
  - branch: {if: traits.vip == true, then: [], else: [{delay: 1h}]}
  - wait_for: {event: Page Viewed, timeout: 2h, on_timeout: [{exit: bored}]}
"""
    [resource] = parse_documents(text)
    assert resource.spec["quiet_hours"] == {"start": "21:00", "end": "08:00", "action": "drop"}
    assert resource.spec["steps"][2] == {"update_trait": {"name": "last_nudge", "value": {"step": 2}}}


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        pytest.param("steps: [{sned: {channel: email, template: t}}]", "steps[0].sned",
                     "unknown step kind 'sned' (did you mean 'send'?)", id="unknown-step-kind"),
        pytest.param("steps: [{send: {channel: email, template: t}, delay: 5m}]", "steps[0]",
                     "has 2 step kinds ('send', 'delay')", id="two-kinds-in-one-step"),
        pytest.param("steps: [{}]", "steps[0]", "steps[0] is empty", id="empty-step"),
        pytest.param("steps: [{exit: holdout}]", "steps[0].exit", "an exit step cannot use them",
                     id="reserved-exit-reason"),
        pytest.param("steps: []", "steps", "a journey needs at least one step", id="no-steps"),
        pytest.param("steps: [{delay: 45 minutes}]", "steps[0].delay",
                     "invalid steps[0].delay '45 minutes'; expected a duration such as '45m'", id="bad-delay"),
        pytest.param("steps: [{delay: {until: '25:00'}}]", "steps[0].delay.until",
                     "invalid steps[0].delay.until '25:00'; expected a local time of day 'HH:MM'", id="bad-until"),
        pytest.param("steps: [{delay: {until: 9}}]", "steps[0].delay.until",
                     "invalid steps[0].delay.until 9; expected a local time of day 'HH:MM'", id="until-number"),
        pytest.param("steps: [{wait_for: {event: Order Completed, timeout: 15x}}]", "steps[0].wait_for.timeout",
                     "invalid steps[0].wait_for.timeout '15x'", id="bad-timeout"),
        pytest.param("steps: [{split: {paths: {a: {weight: 0, steps: []}}}}]", "steps[0].split.paths.a.weight",
                     "expected a positive number", id="weight-zero"),
        pytest.param("steps: [{split: {paths: {a: {weight: -2, steps: []}}}}]", "steps[0].split.paths.a.weight",
                     "invalid steps[0].split.paths.a.weight -2", id="weight-negative"),
        pytest.param("steps: [{split: {holdout: 120, paths: {a: {weight: 1, steps: []}}}}]", "steps[0].split.holdout",
                     "expected a percentage from 0 up to (not including) 100", id="holdout-over-100"),
        pytest.param("steps: [{split: {holdout: 100, paths: {a: {weight: 1, steps: []}}}}]", "steps[0].split.holdout",
                     "keeps every profile out of the split", id="holdout-everyone"),
        pytest.param("steps: [{split: {paths: {}}}]", "steps[0].split.paths",
                     "a split needs at least one path", id="empty-paths"),
        pytest.param("steps: [{split: {paths: {holdout: {weight: 1, steps: []}}}}]", "steps[0].split.paths.holdout",
                     "a split path cannot be named 'holdout'", id="path-named-holdout"),
        pytest.param(f"steps: [{{exit: done}}, {SEND}, {SEND}]", "steps[1]",
                     "unreachable step: steps[1] and the 1 step(s) after it can never run, because steps[0] leaves "
                     "the journey with 'exit: done'; remove them or move steps[0] after them", id="step-after-exit"),
        pytest.param(f"steps: [{{branch: {{if: traits.vip, then: [{{exit: a}}], else: [{{exit: b}}]}}}}, {SEND}]",
                     "steps[1]", "every way through steps[0] ends in an exit", id="after-branch-that-exits"),
        pytest.param(f"steps: [{{wait_for: {{event: E, timeout: 1h, on_event: [{{exit: a}}, {SEND}]}}}}]",
                     "steps[0].wait_for.on_event[1]", "unreachable step", id="nested-unreachable"),
        pytest.param("steps: [{split: {paths: {a: {weight: 1, steps: [{send: {channel: email}}]}}}}]",
                     "steps[0].split.paths.a.steps[0].send.template", "missing required field 'template'",
                     id="deep-field-path"),
        pytest.param("steps: [{wait_for: {event: E, timeout: 1h, on_event: [{exitt: done}]}}]",
                     "steps[0].wait_for.on_event[0].exitt", "did you mean 'exit'?", id="nested-unknown-kind"),
        pytest.param(f"steps: [{{branch: {{if: traits.vip ==, then: [{SEND}]}}}}]", "steps[0].branch.if",
                     "invalid rule in steps[0].branch.if", id="bad-branch-rule"),
        pytest.param(f"exit_when: count(\"Order Completed\" >= 1\nsteps: [{SEND}]", "exit_when",
                     "invalid rule in exit_when", id="bad-exit-rule"),
        pytest.param("steps: [{send: {channel: email, template: t, tags: [a, a]}}]", "steps[0].send.tags[1]",
                     "duplicate 'a'", id="duplicate-tag"),
        pytest.param(f"reentry: sometimes\nsteps: [{SEND}]", "reentry",
                     "expected 'never', 'always' or 'after <duration>'", id="unknown-reentry"),
        pytest.param(f"reentry: after 7x\nsteps: [{SEND}]", "reentry", "invalid duration '7x' in reentry",
                     id="reentry-bad-duration"),
        pytest.param(f"priority: -1\nsteps: [{SEND}]", "priority", "expected a whole number of at least 0",
                     id="negative-priority"),
        pytest.param(f"goal: {{event: Order Completed}}\nsteps: [{SEND}]", "goal.within",
                     "missing required field 'within'", id="goal-without-window"),
        pytest.param(f"goal: {{event: O, within: 1d, where: traits.vip}}\nsteps: [{SEND}]", "goal.where",
                     "may only read event.<property>", id="goal-where-not-event"),
        pytest.param(f"quiet_hours: {{start: 21:00, end: '08:00'}}\nsteps: [{SEND}]", "quiet_hours.start",
                     "if you meant 21:00, YAML read the unquoted time as the number 1260; write it in quotes, '21:00'",
                     id="unquoted-time"),
        pytest.param(f"quiet_hours: {{start: '21:00', end: '08:00', action: mute}}\nsteps: [{SEND}]",
                     "quiet_hours.action", "unknown quiet_hours.action 'mute'", id="quiet-action"),
        pytest.param(f"quiet_hours: {{start: '21:00', end: '21:00'}}\nsteps: [{SEND}]", "quiet_hours.end",
                     "no window at all", id="quiet-empty-window"),
        pytest.param(f"steps: [{SEND}]\nentry: {{evnt: Cart Added}}", "entry.evnt",
                     "unknown entry trigger 'evnt' (did you mean 'event'?)", id="unknown-entry"),
        pytest.param(f"steps: [{SEND}]\nentry: {{schedule: {{every: 1d, at: '09:00'}}}}", "entry.schedule",
                     "has 2 schedules ('every', 'at')", id="schedule-twice"),
        pytest.param("steps: [{send: {channel: Email, template: t}}]", "steps[0].send.channel",
                     "invalid steps[0].send.channel 'Email'; expected a Channel name", id="bad-channel-name"),
    ],
)
def test_invalid_documents_name_the_field(errors_of: Errors, body: str, field: str, fragment: str) -> None:
    head = HEAD if "\nentry:" not in body else HEAD.replace("entry: {event: Cart Added}\n", "")
    errors = errors_of(head + body + "\n")
    assert [error["field"] for error in errors] == [field], errors
    assert fragment in errors[0]["message"], errors[0]["message"]
    assert errors[0]["kind"] == "Journey" and errors[0]["name"] == "j"


def test_missing_purpose_and_steps_are_both_reported(errors_of: Errors) -> None:
    errors = errors_of("kind: Journey\nname: j\nentry: {event: E}\n")
    assert [(e["field"], e["message"].split(";")[0]) for e in errors] == [
        ("purpose", "missing required field 'purpose'"), ("steps", "missing required field 'steps'")]


def test_errors_carry_their_yaml_line(errors_of: Errors) -> None:
    text = HEAD + "steps:\n  - delay: 1h\n  - split:\n      paths:\n        a: {weight: 0, steps: []}\n"
    [error] = errors_of(text)
    assert (error["field"], error["line"]) == ("steps[1].split.paths.a.weight", 9)


@pytest.fixture
def example_spec() -> dict[str, Any]:
    spec: dict[str, Any] = parse_documents(EXAMPLE)[0].spec
    return spec


def test_references_list_every_template_and_channel(example_spec: dict[str, Any]) -> None:
    spec = {**example_spec, "steps": [*example_spec["steps"], {"webhook": {"channel": "crm_hook"}}]}
    assert journey_kind.references(spec) == {
        ("Channel", "email"), ("Channel", "push"), ("Channel", "sms"), ("Channel", "crm_hook"),
        ("Template", "cart_reminder"), ("Template", "cart_push"), ("Template", "cart_sms"),
        ("Template", "cart_offer_10"), ("Template", "cart_offer_free_shipping"),
    }


def test_unknown_references_are_reported_with_their_path_and_nearest_name(example_spec: dict[str, Any]) -> None:
    known = {
        "Channel": {"email", "push", "sms"},
        "Template": {"cart_reminder", "cart_push", "cart_sms", "cart_offer_10", "cart_offer_free_shiping"},
    }
    assert journey_kind.check_references(example_spec, known) == [(
        "steps[6].split.paths.b.steps[0].send.template",
        "unknown Template 'cart_offer_free_shipping' (did you mean 'cart_offer_free_shiping'?) in "
        "steps[6].split.paths.b.steps[0].send.template; expected one of 'cart_offer_10', "
        "'cart_offer_free_shiping', 'cart_push', 'cart_reminder', 'cart_sms'",
    )]
    no_channels = journey_kind.check_references(example_spec, {"Template": known["Template"]})
    assert [path for path, _ in no_channels] == [
        "steps[1].send.channel", "steps[3].send.channel", "steps[5].branch.then[0].send.channel",
        "steps[6].split.paths.a.steps[0].send.channel", "steps[6].split.paths.b.steps[0].send.channel",
        "steps[6].split.paths.b.steps[0].send.template"]
    assert "expected a Channel name, but none is defined" in no_channels[0][1]


def test_the_tree_has_path_ids_and_each_step_knows_what_follows(example_spec: dict[str, Any]) -> None:
    journey = build(example_spec, version=4)
    assert (journey.name, journey.version, journey.purpose, journey.priority) == (
        "cart_abandonment", 4, "marketing_email", 0)
    assert journey.entry == Entry("event", name="Cart Added")
    assert journey.reentry == Reentry("after", 7 * DAY)
    assert journey.goal == Goal("Order Completed", 3 * DAY)
    assert journey.exit_when == parse('count("Order Completed", within=1h) >= 1')
    assert list(journey.by_id) == ["0", "0.on_event.0", "1", "2", "3", "4", "5", "5.then.0", "6", "6.a.0", "6.b.0"]
    assert journey.first == "0"
    assert journey.step("0.on_event.0") == ExitStep("0.on_event.0", "converted")
    assert journey.step("2") == DelayStep("2", ms=45 * MINUTE)
    wait = journey.step("0")
    assert isinstance(wait, WaitStep) and (wait.event, wait.correlate, wait.timeout_ms) == (
        "Order Completed", "cart_id", 15 * MINUTE)
    split = journey.step("6")
    assert isinstance(split, SplitStep) and split.holdout_percent == 10
    assert split.paths[1] == SplitPath("b", Fraction(50), (SendStep("6.b.0", "email", "cart_offer_free_shipping"),))
    following = {step_id: journey.next_after(step_id) for step_id in journey.by_id}
    assert following == {"0": "1", "0.on_event.0": "1", "1": "2", "2": "3", "3": "4", "4": "5", "5": "6",
                         "5.then.0": "6", "6": None, "6.a.0": None, "6.b.0": None}
    branch = journey.step("5")
    assert isinstance(branch, BranchStep)
    assert journey.start_of(branch.then, "5") == "5.then.0"
    assert journey.start_of(branch.otherwise, "5") == "6"
    assert journey.reads_facts
    with pytest.raises(KeyError, match="has no step '7'"):
        journey.step("7")


def test_a_nested_list_ends_at_its_holders_next_sibling() -> None:
    spec = yaml.safe_load(HEAD + """\
steps:
  - branch:
      if: traits.vip == true
      then:
        - wait_for:
            event: E
            timeout: 1h
            on_timeout: [{delay: 1m}, {send: {channel: email, template: t}}]
  - delay: 2m
""")
    journey = build(spec)
    assert journey.next_after("0.then.0.on_timeout.1") == "1"
    assert journey.next_after("0.then.0.on_timeout.0") == "0.then.0.on_timeout.1"
    assert journey.next_after("0.then.0") == "1"
    assert journey.next_after("1") is None


def test_build_refuses_an_invalid_spec() -> None:
    spec = yaml.safe_load(HEAD + "steps: [{exit: done}, {delay: 1m}]\n")
    with pytest.raises(ValidationError) as caught:
        build(spec)
    assert caught.value.code == "invalid_resource"
    assert [detail["field"] for detail in caught.value.details] == ["steps[1]"]


def test_schedule_entries() -> None:
    def with_entry(entry: str) -> Journey:
        return build(yaml.safe_load(HEAD.replace("{event: Cart Added}", entry) + "steps: [{delay: 1m}]"))

    every, at = with_entry("{schedule: {every: 1d}}"), with_entry("{schedule: {at: '09:30'}}")
    exited = with_entry("{segment_exited: vip}")
    assert every.entry == Entry("schedule", every_ms=DAY)
    assert at.entry == Entry("schedule", at=time(9, 30))
    assert exited.entry == Entry("segment_exited", name="vip")
    assert not every.reads_facts


@pytest.mark.parametrize(
    ("policy", "last", "active", "now", "allowed"),
    [
        (Reentry("never"), None, False, 0, True),
        (Reentry("never"), 0, False, 10 * DAY, False),
        (Reentry("always"), 0, True, 10 * DAY, False),
        (Reentry("always"), 0, False, 1, True),
        (Reentry("after", 7 * DAY), 0, False, 7 * DAY - 1, False),
        (Reentry("after", 7 * DAY), 0, False, 7 * DAY, True),
        (Reentry("after", 7 * DAY), 0, True, 8 * DAY, False),
    ],
    ids=["first-entry", "never-again", "always-but-active", "always-finished", "after-too-soon", "after-on-time",
         "after-but-active"],
)
def test_reentry_policies(policy: Reentry, last: int | None, active: bool, now: int, allowed: bool) -> None:
    assert policy.allows(last, active, now) is allowed


def test_bucket_test_vectors() -> None:
    """The hash specification of ``rapport.journeys.split``; changing it reassigns every profile."""
    assert bucket("cart_abandonment", "6", "prf_1") == 2017
    assert bucket("cart_abandonment", "6", "prf_2") == 6072
    assert bucket("onboarding", "3.a.0", "u1") == 5302
    assert bucket("", "0", "") == 4236


def _split(holdout: int | str, *weights: int) -> SplitStep:
    paths = tuple(SplitPath(name, Fraction(weight), ()) for name, weight in zip("abc", weights, strict=False))
    return SplitStep("0", paths, Fraction(holdout))


@pytest.mark.parametrize(
    ("split", "slot", "path"),
    [
        (_split(10, 50, 50), 999, None), (_split(10, 50, 50), 1000, "a"), (_split(10, 50, 50), 5499, "a"),
        (_split(10, 50, 50), 5500, "b"), (_split(10, 50, 50), BUCKETS - 1, "b"), (_split(0, 1, 3), 0, "a"),
        (_split(0, 1, 3), 2499, "a"), (_split(0, 1, 3), 2500, "b"), (_split("12.5", 1), 1249, None),
        (_split("12.5", 1), 1250, "a"),
    ],
    ids=["holdout-last", "a-first", "a-last", "b-first", "b-last", "no-holdout", "quarter-last", "rest-first",
         "fractional-holdout-last", "fractional-holdout-then-path"],
)
def test_bucket_boundaries(split: SplitStep, slot: int, path: str | None) -> None:
    chosen = choose(split, slot)
    assert (chosen.name if chosen else None) == path


def test_assignment_follows_weights_and_holdout() -> None:
    split = _split(10, 1, 2, 1)
    counts = Counter(assign("cart_abandonment", split, f"prf_{n}") for n in range(20_000))
    shares = {name: count / 20_000 for name, count in counts.items()}
    assert shares.keys() == {"holdout", "a", "b", "c"}
    assert abs(shares["holdout"] - 0.10) < 0.01
    assert abs(shares["a"] - 0.225) < 0.015 and abs(shares["c"] - 0.225) < 0.015
    assert abs(shares["b"] - 0.45) < 0.015
    assert all(assign("cart_abandonment", split, f"prf_{n}") == assign("cart_abandonment", split, f"prf_{n}")
               for n in range(100))


def test_two_splits_of_one_journey_assign_independently() -> None:
    first, second = SplitStep("1", _split(0, 1, 1).paths), SplitStep("4", _split(0, 1, 1).paths)
    pairs = Counter((assign("j", first, f"p{n}"), assign("j", second, f"p{n}")) for n in range(4_000))
    assert all(800 < pairs[(x, y)] < 1_200 for x in "ab" for y in "ab"), pairs


def test_quiet_hours_are_kept_on_the_model() -> None:
    spec = yaml.safe_load(HEAD + "quiet_hours: {start: '21:00', end: '08:00'}\nsteps: [{delay: 1m}]")
    journey = build(spec)
    assert journey.quiet_hours is not None
    assert (journey.quiet_hours.start, journey.quiet_hours.end, journey.quiet_hours.action) == (
        time(21, 0), time(8, 0), "hold")
