"""The enrollment state machine: the DESIGN journey walked by hand, then properties over random journeys
and random event sequences (no send after an exit or a goal, no send twice, no timer early, delays add up)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rapport.clock import parse_iso, to_iso
from rapport.journeys.machine import (
    EXIT_WHEN,
    FINISHED,
    Assign,
    CallWebhook,
    Command,
    Convert,
    Enrollment,
    Enter,
    Exit,
    Incoming,
    Schedule,
    Send,
    Tick,
    UpdateTrait,
    enroll,
    idempotency_key,
    step,
)
from rapport.journeys.model import Journey, SendStep, SplitStep, build, walk
from rapport.journeys.split import assign
from rapport.resources.builtin.journey import always_exits
from rapport.rules import DictContext
from rapport.types import DAY, HOUR, MINUTE, Millis

T0 = parse_iso("2026-06-01T10:00:00Z")
HEAD = "kind: Journey\nname: j\npurpose: marketing_email\nentry: {event: Cart Added}\n"
CART = {"cart_id": "c1"}


def journey_of(body: str, version: int = 1) -> Journey:
    return build(yaml.safe_load(HEAD + body), version)


def facts(**traits: object) -> DictContext:
    return DictContext({"traits": traits, "consent": {"marketing_sms": traits.get("sms", False)}}, now_ms=T0)


def split_at(journey: Journey, step_id: str) -> SplitStep:
    split = journey.step(step_id)
    assert isinstance(split, SplitStep)
    return split


def sends(commands: tuple[Command, ...]) -> list[str]:
    return [c.template for c in commands if isinstance(c, Send)]


DESIGN = """\
exit_when: traits.bought == true
goal: {event: Order Completed, within: 3d}
steps:
  - wait_for:
      event: Order Completed
      correlate: cart_id
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
      holdout: 10
      paths:
        a: {weight: 50, steps: [{send: {channel: email, template: cart_offer_10}}]}
        b: {weight: 50, steps: [{send: {channel: email, template: cart_offer_free_shipping}}]}
"""


def test_the_design_journey_on_time() -> None:
    journey = journey_of(DESIGN)
    state = enroll(journey, "enr_1", "prf_2")
    state, commands = step(journey, state, Enter(CART, T0), T0)
    assert commands == (Schedule(T0 + 15 * MINUTE),)
    assert (state.status, state.step_id, state.waiting_until) == ("active", "0", T0 + 15 * MINUTE)

    assert step(journey, state, Tick(), T0 + 15 * MINUTE - 1) == (state, ())
    state, commands = step(journey, state, Tick(), T0 + 15 * MINUTE)
    assert commands == (Send("1", "email", "cart_reminder", idempotency_key("enr_1", "1")),
                        Schedule(T0 + 60 * MINUTE))
    state, commands = step(journey, state, Tick(), T0 + 60 * MINUTE)
    assert sends(commands) == ["cart_push"] and commands[-1] == Schedule(T0 + 24 * HOUR)
    state, commands = step(journey, state, Tick(facts(sms=True)), T0 + 24 * HOUR)
    path = assign("j", split_at(journey, "6"), "prf_2")
    assert path in ("a", "b")
    offer = "cart_offer_10" if path == "a" else "cart_offer_free_shipping"
    assert commands == (Send("5.then.0", "sms", "cart_sms", idempotency_key("enr_1", "5.then.0")),
                        Assign("6", path), Send(f"6.{path}.0", "email", offer, idempotency_key("enr_1", f"6.{path}.0")))
    assert (state.status, state.finished_at, state.step_id) == ("completed", T0 + 24 * HOUR, None)
    assert state.sent == {"1", "3", "5.then.0", f"6.{path}.0"}


def test_a_late_worker_catches_up_without_shifting_later_steps() -> None:
    journey = journey_of(DESIGN)
    state, _ = step(journey, enroll(journey, "enr_1", "prf_2"), Enter(CART, T0), T0)
    state, commands = step(journey, state, Tick(), T0 + 2 * HOUR)
    assert sends(commands) == ["cart_reminder", "cart_push"]
    assert commands[-1] == Schedule(T0 + 24 * HOUR) and state.step_id == "4"


def test_the_branch_takes_else_without_consent_and_the_holdout_exits() -> None:
    journey = journey_of(DESIGN)
    held = next(f"prf_{n}" for n in range(1000) if assign("j", split_at(journey, "6"), f"prf_{n}") == "holdout")
    state, _ = step(journey, enroll(journey, "enr_9", held), Enter(CART, T0), T0)
    state, commands = step(journey, state, Tick(facts(sms=False)), T0 + 2 * DAY)
    assert sends(commands) == ["cart_reminder", "cart_push"]
    assert commands[-2:] == (Assign("6", "holdout"), Exit("holdout"))
    assert (state.status, state.reason, state.finished_at) == ("exited", "holdout", T0 + 24 * HOUR)
    # The holdout is there to measure conversions without the journey: they still count.
    state, commands = step(journey, state, Incoming("Order Completed", {}, facts()), T0 + 2 * DAY + 1)
    assert commands == (Convert("Order Completed"),) and state.status == "converted"


def test_the_goal_acts_mid_delay_and_nothing_is_sent_after_it() -> None:
    journey = journey_of(DESIGN)
    state, _ = step(journey, enroll(journey, "enr_1", "prf_2"), Enter(CART, T0), T0)
    state, _ = step(journey, state, Tick(), T0 + 15 * MINUTE)
    state, commands = step(journey, state, Incoming("Order Completed", {"cart_id": "other"}, facts()), T0 + HOUR - 1)
    assert commands == (Convert("Order Completed"),)
    assert (state.status, state.step_id, state.waiting_until, state.finished_at) == (
        "converted", None, None, T0 + HOUR - 1)
    assert step(journey, state, Tick(), T0 + 30 * DAY) == (state, ())
    assert step(journey, state, Incoming("Order Completed", {}, facts()), T0 + HOUR) == (state, ())


def test_the_goal_window_counts_from_entry() -> None:
    journey = journey_of("goal: {event: Order Completed, within: 1d, where: event.revenue > 0}\n"
                         "steps: [{delay: 1h}, {send: {channel: email, template: t}}, {delay: 3d}]")
    state, _ = step(journey, enroll(journey, "e", "p"), Enter({}, T0), T0)
    free = Incoming("Order Completed", {"revenue": 0}, facts())
    assert step(journey, state, free, T0 + HOUR - 1) == (state, ())
    paid = Incoming("Order Completed", {"revenue": 10}, facts())
    assert step(journey, state, paid, T0 + DAY)[1] == (Convert("Order Completed"),)
    assert step(journey, state, paid, T0 + DAY + 1) == (state, ())


def test_a_completed_enrollment_still_converts_within_the_window() -> None:
    journey = journey_of("goal: {event: Order Completed, within: 1d}\nsteps: [{send: {channel: email, template: t}}]")
    state, commands = step(journey, enroll(journey, "e", "p"), Enter({}, T0), T0)
    assert sends(commands) == ["t"] and state.status == "completed"
    state, commands = step(journey, state, Incoming("Order Completed", {}, facts()), T0 + HOUR)
    assert commands == (Convert("Order Completed"),)
    assert (state.status, state.finished_at) == ("converted", T0)


def test_exit_when_acts_mid_delay() -> None:
    journey = journey_of(DESIGN)
    state, _ = step(journey, enroll(journey, "enr_1", "prf_2"), Enter(CART, T0), T0)
    state, _ = step(journey, state, Incoming("Page Viewed", {}, facts(bought=False)), T0 + MINUTE)
    assert state.status == "active"
    state, commands = step(journey, state, Incoming("Page Viewed", {}, facts(bought=True)), T0 + 2 * MINUTE)
    assert commands == (Exit(EXIT_WHEN),)
    assert (state.status, state.reason, state.finished_at) == ("exited", EXIT_WHEN, T0 + 2 * MINUTE)
    assert step(journey, state, Tick(), T0 + DAY) == (state, ())


def test_exit_when_reads_the_incoming_event() -> None:
    journey = journey_of("exit_when: event.reason == \"complaint\"\nsteps: [{delay: 1h}]")
    state, _ = step(journey, enroll(journey, "e", "p"), Enter({"reason": "complaint"}, T0), T0)
    assert step(journey, state, Incoming("Ticket", {"reason": "question"}, facts()), T0 + 1) == (state, ())
    assert step(journey, state, Incoming("Ticket", {"reason": "complaint"}, facts()), T0 + 1)[1] == (
        Exit(EXIT_WHEN),)


WAIT = """\
steps:
  - wait_for:
      event: Order Completed
      correlate: cart_id
      timeout: 15m
      on_event: [{send: {channel: email, template: thanks}}]
      on_timeout: [{send: {channel: email, template: reminder}}]
  - send: {channel: email, template: after}
"""


def test_wait_for_matches_only_the_correlated_event_before_its_timeout() -> None:
    journey = journey_of(WAIT)
    state, _ = step(journey, enroll(journey, "e", "p"), Enter(CART, T0), T0)
    assert step(journey, state, Incoming("Order Completed", {"cart_id": "c2"}, facts()), T0 + 1) == (state, ())
    assert step(journey, state, Incoming("Cart Added", {"cart_id": "c1"}, facts()), T0 + 1) == (state, ())
    done, commands = step(journey, state, Incoming("Order Completed", {"cart_id": "c1"}, facts()), T0 + 1)
    assert sends(commands) == ["thanks", "after"] and done.status == "completed"
    late = Incoming("Order Completed", {"cart_id": "c1"}, facts())
    assert step(journey, state, late, T0 + 15 * MINUTE) == (state, ())
    timed_out, commands = step(journey, state, Tick(), T0 + 15 * MINUTE)
    assert sends(commands) == ["reminder", "after"] and timed_out.finished_at == T0 + 15 * MINUTE


def test_an_entry_event_without_the_correlation_property_matches_nothing() -> None:
    journey = journey_of(WAIT)
    state, _ = step(journey, enroll(journey, "e", "p"), Enter({}, T0), T0)
    assert step(journey, state, Incoming("Order Completed", {}, facts()), T0 + 1) == (state, ())
    assert step(journey, state, Incoming("Order Completed", {"cart_id": None}, facts()), T0 + 1) == (state, ())


def test_branches_read_profile_facts_and_the_entry_event() -> None:
    journey = journey_of("steps:\n  - branch:\n      if: traits.vip == true and event.total > 100\n"
                         "      then: [{send: {channel: email, template: vip}}]\n"
                         "      else: [{send: {channel: email, template: regular}}]\n")
    vip = step(journey, enroll(journey, "e", "p"), Enter({"total": 150}, T0, facts(vip=True)), T0)
    small = step(journey, enroll(journey, "e", "p"), Enter({"total": 50}, T0, facts(vip=True)), T0)
    assert sends(vip[1]) == ["vip"] and sends(small[1]) == ["regular"]
    with pytest.raises(ValueError, match="needs the profile's facts"):
        step(journey, enroll(journey, "e", "p"), Enter({"total": 150}, T0), T0)


def test_delay_until_a_local_time_uses_the_persons_zone() -> None:
    journey = journey_of("steps: [{delay: {until: '09:00'}}, {send: {channel: email, template: t}}]")
    at = parse_iso("2026-06-01T10:00:00Z")  # noon in Paris: 09:00 is tomorrow
    _, commands = step(journey, enroll(journey, "e", "p"), Enter({}, at, timezone="Europe/Paris"), at)
    assert commands == (Schedule(parse_iso("2026-06-02T07:00:00Z")),)
    _, commands = step(journey, enroll(journey, "e", "p"), Enter({}, at, timezone="America/New_York"), at)
    assert [to_iso(c.at) for c in commands if isinstance(c, Schedule)] == ["2026-06-01T13:00:00.000Z"]


@pytest.mark.parametrize(
    ("entered", "until", "zone", "due"),
    [
        ("2026-03-28T23:00:00Z", "02:30", "Europe/Paris", "2026-03-29T01:00:00.000Z"),
        ("2026-03-28T12:00:00Z", "09:00", "Europe/Paris", "2026-03-29T07:00:00.000Z"),
        ("2026-10-24T23:00:00Z", "02:30", "Europe/Paris", "2026-10-25T00:30:00.000Z"),
        ("2026-10-31T14:00:00Z", "09:00", "America/New_York", "2026-11-01T14:00:00.000Z"),
    ],
    ids=["skipped-hour-waits-for-the-jump", "morning-after-spring-forward", "repeated-hour-first-occurrence",
         "morning-after-fall-back"],
)
def test_delay_until_across_dst(entered: str, until: str, zone: str, due: str) -> None:
    journey = journey_of(f"steps: [{{delay: {{until: '{until}'}}}}, {{send: {{channel: email, template: t}}}}]")
    at = parse_iso(entered)
    state, commands = step(journey, enroll(journey, "e", "p"), Enter({}, at, timezone=zone), at)
    assert [to_iso(c.at) for c in commands if isinstance(c, Schedule)] == [due]
    assert step(journey, state, Tick(), parse_iso(due) - 1) == (state, ())
    assert sends(step(journey, state, Tick(), parse_iso(due))[1]) == ["t"]


def test_trait_updates_webhooks_and_exit_steps() -> None:
    journey = journey_of("steps: [{update_trait: {name: nudged, value: true}}, {webhook: {channel: crm}},"
                         " {exit: done}]")
    state, commands = step(journey, enroll(journey, "e", "p"), Enter({}, T0), T0)
    assert commands == (UpdateTrait("0", "nudged", True), CallWebhook("1", "crm", idempotency_key("e", "1")),
                        Exit("done"))
    assert (state.status, state.reason, state.sent) == ("exited", "done", frozenset({"1"}))


def test_a_step_already_commanded_is_not_commanded_again() -> None:
    journey = journey_of("steps: [{delay: 1m}, {send: {channel: email, template: t}}]")
    state, _ = step(journey, enroll(journey, "e", "p"), Enter({}, T0), T0)
    state = replace(state, sent=frozenset({"1"}))
    assert sends(step(journey, state, Tick(), T0 + MINUTE)[1]) == []


def test_enter_twice_and_foreign_versions() -> None:
    journey = journey_of("steps: [{delay: 1m}]", version=2)
    state, _ = step(journey, enroll(journey, "e", "p"), Enter({}, T0), T0)
    assert step(journey, state, Enter({}, T0 + 1), T0 + 1) == (state, ())
    with pytest.raises(ValueError, match="version 2, not 'j' version 3"):
        step(journey_of("steps: [{delay: 1m}]", version=3), state, Tick(), T0 + MINUTE)


def test_idempotency_keys_are_stable_and_distinct() -> None:
    assert idempotency_key("enr_1", "1") == idempotency_key("enr_1", "1")
    assert len({idempotency_key(e, s) for e in ("enr_1", "enr_2") for s in ("1", "6.a.0", "11")}) == 6
    assert idempotency_key("enr_1", "1") == "027b9a6f7ca7f5a393b3282222c1010e"


# --- properties over random journeys and event sequences ---------------------------------------------

TEMPLATES = ("t1", "t2", "t3")
EVENTS = ("Order Completed", "Cart Added", "Page Viewed")

send = st.builds(lambda template: {"send": {"channel": "email", "template": template}}, st.sampled_from(TEMPLATES))
other_leaf = st.one_of(
    st.integers(1, 180).map(lambda minutes: {"delay": f"{minutes}m"}),
    st.sampled_from(("00:00", "09:00", "21:30")).map(lambda time: {"delay": {"until": time}}),
    st.just({"exit": "done"}),
    st.just({"update_trait": {"name": "seen", "value": 1}}),
    st.just({"webhook": {"channel": "hook"}}),
)
# Half the leaves are sends, so that most journeys send something before any exit (``one_of`` would
# weigh each alternative alike, nested or not).
leaf = st.booleans().flatmap(lambda is_send: send if is_send else other_leaf)


def _container(inner: st.SearchStrategy[list[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A wait, branch or split holding step lists drawn from ``inner``."""
    wait = st.builds(
        lambda event, correlate, minutes, on_event, on_timeout: {"wait_for": {
            "event": event, "timeout": f"{minutes}m", "on_event": on_event, "on_timeout": on_timeout,
            **({"correlate": "cart_id"} if correlate else {})}},
        st.sampled_from(EVENTS), st.booleans(), st.integers(1, 180), inner, inner)
    branch = st.builds(lambda rule, then, otherwise: {"branch": {"if": rule, "then": then, "else": otherwise}},
                       st.sampled_from(("traits.vip == true", 'event.cart_id == "c1"')), inner, inner)
    split = st.builds(
        lambda holdout, paths: {"split": {"holdout": holdout, "paths": paths}},
        st.sampled_from((0, 10, 50)),
        st.dictionaries(st.sampled_from(("a", "b", "c")),
                        st.builds(lambda weight, steps: {"weight": weight, "steps": steps}, st.integers(1, 5), inner),
                        min_size=1, max_size=3))
    return st.one_of(wait, branch, split)


def _containers(inner: st.SearchStrategy[list[Any]]) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.one_of(leaf, _container(inner)), max_size=4)


nested_steps = st.recursive(st.lists(leaf, max_size=3), _containers, max_leaves=8)


def prune(steps: list[Any]) -> list[Any]:
    """``steps`` without what can never run (the validator refuses steps after an exit)."""
    out: list[Any] = []
    for item in steps:
        [(kind, body)] = item.items()
        if kind == "wait_for":
            item = {kind: {**body, "on_event": prune(body["on_event"]), "on_timeout": prune(body["on_timeout"])}}
        elif kind == "branch":
            item = {kind: {**body, "then": prune(body["then"]), "else": prune(body["else"])}}
        elif kind == "split":
            item = {kind: {**body, "paths": {name: {**path, "steps": prune(path["steps"])}
                                             for name, path in body["paths"].items()}}}
        out.append(item)
        if always_exits([item]):
            break
    return out


BASE: dict[str, Any] = {"kind": "Journey", "name": "j", "purpose": "marketing_email", "entry": {"event": "Cart Added"}}


@st.composite
def journeys(draw: st.DrawFn) -> Journey:
    steps = prune(draw(st.lists(st.one_of(leaf, _container(nested_steps)), min_size=1, max_size=6)))
    # Most small trees hold no send at all; put one where it can run, so that most runs can send.
    if not any(isinstance(node, SendStep) for node in walk(build({**BASE, "steps": steps}).steps)):
        last = len(steps) - 1 if always_exits(steps[-1:]) else len(steps)
        steps.insert(draw(st.integers(0, last)), draw(send))
    spec: dict[str, Any] = {**BASE, "steps": steps}
    if draw(st.booleans()):
        spec["exit_when"] = "traits.stop == true"
    if draw(st.booleans()):
        spec["goal"] = {"event": "Order Completed", "within": f"{draw(st.integers(1, 48))}h"}
    return build(spec)


@dataclass(frozen=True)
class Action:
    """One thing that happens to the enrollment after ``advance`` ms: a timer (``tick``), a timer exactly
    when due (``due``), or an incoming event."""

    kind: str
    advance: Millis
    name: str = ""
    properties: Mapping[str, Any] = field(default_factory=dict)
    stop: bool = False


actions = st.lists(st.one_of(
    st.builds(Action, st.just("tick"), st.integers(0, 6 * HOUR)),
    st.builds(Action, st.just("due"), st.just(0)),
    st.builds(Action, st.just("due"), st.just(0)),
    st.builds(Action, st.just("event"), st.integers(0, 3 * HOUR), st.sampled_from(EVENTS),
              st.sampled_from(({"cart_id": "c1"}, {"cart_id": "c2"}, {})),
              st.integers(0, 9).map(lambda n: n == 0)),  # the exit rule holds on one event in ten
), min_size=3, max_size=25)


def run(journey: Journey, profile: str, script: list[Action], vip: bool, zone: str) -> list[tuple[
        Enrollment, Any, Millis, Enrollment, tuple[Command, ...]]]:
    """Every transition ``(before, event, now, after, commands)`` of one enrollment through ``script``."""
    now = T0
    state = enroll(journey, "enr_x", profile)
    context = DictContext({"traits": {"vip": vip, "stop": False}}, now_ms=now)
    trace = []
    event: Any = Enter({"cart_id": "c1"}, now, context, zone)
    after, commands = step(journey, state, event, now)
    trace.append((state, event, now, after, commands))
    for action in script:
        state = after
        if action.kind == "due":
            now = max(now, state.waiting_until or now)
        now += action.advance
        context = DictContext({"traits": {"vip": vip, "stop": action.stop}}, now_ms=now)
        event = Tick(context) if action.kind in ("tick", "due") else Incoming(action.name, action.properties, context)
        after, commands = step(journey, state, event, now)
        trace.append((state, event, now, after, commands))
    return trace


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(journeys(), st.sampled_from(("prf_1", "prf_2", "prf_3", "prf_4")), actions, st.booleans(),
       st.sampled_from(("UTC", "Europe/Paris", "America/New_York")))
def test_machine_properties(journey: Journey, profile: str, script: list[Action], vip: bool, zone: str) -> None:
    keys: set[str] = set()
    stopped = False
    for before, happened, now, after, commands in run(journey, profile, script, vip, zone):
        for command in commands:
            if isinstance(command, Send | CallWebhook):
                assert not stopped, f"a send after an exit or a goal: {command}"
                assert command.idempotency_key not in keys, f"sent twice: {command}"
                assert command.idempotency_key == idempotency_key(before.id, command.step_id)
                keys.add(command.idempotency_key)
            if isinstance(command, Exit | Convert):
                stopped = True
            if isinstance(command, Schedule):
                assert command.at > now and command.at == after.waiting_until
        if isinstance(happened, Tick) and before.waiting_until is not None and now < before.waiting_until:
            assert (after, commands) == (before, ()), "a timer fired early"
        if after.status == "active":
            # Waiting; after a timer, for an instant still to come (an event may arrive before an overdue
            # timer is served, and leaves the timer to it).
            assert after.waiting_until is not None and after.step_id is not None
            assert after.waiting_until > now or not isinstance(happened, Tick | Enter)
        if before.status in FINISHED:
            assert after.status in FINISHED and not [c for c in commands if not isinstance(c, Convert)]
        assert after.sent >= before.sent
        if after.status in ("exited", "converted"):
            stopped = True
    assert keys == {idempotency_key("enr_x", s) for s in after.sent}
    event(f"ends {after.status}" + (f" ({after.reason})" if after.reason else ""))
    event("sent something" if keys else "sent nothing")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 3 * 24 * 60), min_size=1, max_size=6),
       st.lists(st.one_of(st.integers(0, 2 * DAY), st.none()), max_size=30))
def test_a_journey_of_delays_completes_at_their_sum(minutes: list[int], ticks: list[Millis | None]) -> None:
    journey = build({"kind": "Journey", "name": "j", "purpose": "necessary", "entry": {"event": "E"},
                     "steps": [{"delay": f"{m}m"} for m in minutes]})
    end = T0 + sum(minutes) * MINUTE
    state, commands = step(journey, enroll(journey, "e", "p"), Enter({}, T0), T0)
    assert commands == (Schedule(T0 + minutes[0] * MINUTE),)
    now = T0
    for advance in [*ticks, None]:  # None: the next timer fires when due; the last makes sure the end comes
        if advance is None:
            while state.status == "active":
                assert state.waiting_until is not None
                now = max(now, state.waiting_until)
                state, _ = step(journey, state, Tick(), now)
            continue
        now += advance
        before = state
        state, commands = step(journey, state, Tick(), now)
        if before.status == "active":
            assert before.waiting_until is not None
            if now < before.waiting_until:
                assert (state, commands) == (before, ())
        assert (state.status == "completed") is (now >= end)
        if state.status == "active":
            assert state.waiting_until is not None and now < state.waiting_until <= end
    assert (state.status, state.finished_at) == ("completed", end)
