"""Journey: the steps a profile walks through after an entry trigger, as DESIGN 4.4 writes them.

A journey is a list of steps run in order; ``wait_for``, ``branch`` and ``split`` hold their own
step lists, so a journey is a tree and cannot loop. Each step is a mapping with exactly one key,
its kind (``- delay: 45m``). Errors name the field path down the tree, e.g.
``steps[6].split.paths.a.steps[0].send.template``. Names of templates and channels are checked
against the other resources by ``check_references``, since one document cannot see them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from rapport.durations import parse_duration
from rapport.errors import ValidationError
from rapport.resources.checks import (
    duration,
    list_of,
    mapping,
    nested,
    one_of,
    positive_number,
    reference,
    rule,
    text,
    whole_number,
)
from rapport.resources.fields import (
    INVALID,
    NAME_HELP,
    Check,
    FieldErrors,
    Path,
    check_document,
    did_you_mean,
    optional,
    quoted,
    render_path,
    required,
    show,
)
from rapport.resources.kinds import KindSpec, register
from rapport.types import Json, JsonObject

if TYPE_CHECKING:
    from rapport.journeys.model import Journey as JourneyModel
    from rapport.resources.model import Resource
    from rapport.storage.base import Conn

STEP_KINDS: Final = ("send", "delay", "wait_for", "branch", "split", "exit", "update_trait", "webhook")
ENTRY_KINDS: Final = ("event", "segment_entered", "segment_exited", "schedule")
HOLDOUT: Final = "holdout"
"""What ``Assign`` records for a profile kept out of a split; no path may take this name."""

PUBLISH_POLICIES: Final = ("drain", "migrate")
STEP_ID: Final = re.compile(r"\d+(?:\.[a-z][a-z0-9_]*\.\d+)*")
STEP_ID_HELP: Final = "a step id in quotes: a step's place, e.g. '2', '0.on_timeout.1' or '6.a.0'"
MIGRATE_HELP: Final = ("a mapping of step ids of the version being replaced to step ids of this version, each "
                       "a delay or wait_for step, e.g. {'2': '4'}")
AUDIENCE_HELP: Final = "a mapping with a segment, a rule, or both"
TIME_OF_DAY: Final = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
TIME_HELP: Final = "a local time of day 'HH:MM' in quotes, e.g. '09:00'"
REENTRY_HELP: Final = "'never', 'always' or 'after <duration>' such as 'after 7d'"
HOLDOUT_HELP: Final = "a percentage from 0 up to (not including) 100, e.g. 10"


def time_of_day() -> Check:
    """A wall-clock time ``HH:MM`` (24-hour), read in the person's time zone."""

    def run(value: Json, ctx: FieldErrors) -> Json:
        if isinstance(value, int) and not isinstance(value, bool) and 60 <= value < 24 * 60:
            # YAML 1.1 reads unquoted 21:00 as the base-60 number 1260 (but 09:00 as a string).
            written = f"{value // 60:02d}:{value % 60:02d}"
            ctx.add(f"invalid {ctx.label} {value}: if you meant {written}, YAML read the unquoted time as the "
                    f"number {value}; write it in quotes, '{written}'; expected {TIME_HELP}", TIME_HELP)
            return INVALID
        if isinstance(value, str) and TIME_OF_DAY.fullmatch(value):
            return value
        return ctx.reject(value, TIME_HELP)

    return Check(TIME_HELP, run)


def reentry() -> Check:
    """``never``, ``always`` or ``after <duration>`` (counted from the previous entry)."""

    def run(value: Json, ctx: FieldErrors) -> Json:
        if value in ("never", "always"):
            return value
        if isinstance(value, str) and value.startswith("after"):
            amount = value[len("after"):].strip()
            try:
                parse_duration(amount)
            except ValidationError:
                ctx.add(f"invalid duration {amount!r} in {ctx.label} {value!r}; expected {REENTRY_HELP}, the "
                        "duration a whole number and one of 's', 'm' (minutes), 'h', 'd', 'w'", REENTRY_HELP)
                return INVALID
            return f"after {amount}"
        if isinstance(value, str):
            hint = did_you_mean(value, ("never", "always", "after"))
            ctx.add(f"unknown {ctx.label} {value!r}{hint}; expected {REENTRY_HELP}", REENTRY_HELP)
            return INVALID
        return ctx.reject(value, REENTRY_HELP)

    return Check(REENTRY_HELP, run)


def percentage() -> Check:
    """A holdout share: at least 0 and below 100 (a holdout of everyone would run no path)."""

    def run(value: Json, ctx: FieldErrors) -> Json:
        number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if number and 0 <= value < 100:
            return value
        if number and value == 100:
            ctx.add(f"{ctx.label} 100 keeps every profile out of the split, so no path would ever run; "
                    f"expected {HOLDOUT_HELP}", HOLDOUT_HELP)
            return INVALID
        return ctx.reject(value, HOLDOUT_HELP)

    return Check(HOLDOUT_HELP, run)


def any_value(expected: str) -> Check:
    """Any JSON value (``null`` counts as absent)."""
    return Check(expected, lambda value, ctx: value)


def exactly_one(what: str, options: Mapping[str, Check]) -> Check:
    """A mapping with exactly one key out of ``options`` (the kind of a step or of an entry)."""
    expected = f"a mapping with exactly one {what}: {quoted(options)}"

    def run(value: Json, ctx: FieldErrors) -> Json:
        if not isinstance(value, dict):
            return ctx.reject(value, expected)
        if not value:
            ctx.add(f"{ctx.label} is empty; expected {expected}", expected)
            return INVALID
        unknown = [key for key in value if key not in options]
        for key in unknown:
            ctx.add(f"unknown {what} {show(key)}{did_you_mean(str(key), options)}; expected one of {quoted(options)}",
                    expected, key)
        kinds = [key for key in value if key in options]
        if len(kinds) > 1:
            ctx.add(f"{ctx.label} has {len(kinds)} {what}s ({quoted(kinds)}); each needs its own list item, "
                    f"in the order they should happen; expected {expected}", expected)
        if unknown or len(kinds) != 1:
            return INVALID
        [key] = kinds
        checked = options[key](value[key], ctx.at(key))
        return INVALID if checked is INVALID else {key: checked}

    return Check(expected, run)


def _steps(value: Json, ctx: FieldErrors) -> Json:
    """A list of steps; a step after one that always leaves the journey can never run."""
    expected = STEPS.expected
    if not isinstance(value, list):
        return ctx.reject(value, expected)
    checked = [STEP(item, ctx.at(index)) for index, item in enumerate(value)]
    for index, item in enumerate(checked[:-1]):
        if isinstance(item, dict) and always_exits([item]):
            rest = len(value) - index - 2
            them = f" and the {rest} step(s) after it" if rest else ""
            exiting = render_path((*ctx.path, index))
            why = (f"{exiting} leaves the journey with 'exit: {item['exit']}'" if "exit" in item
                   else f"every way through {exiting} ends in an exit")
            ctx.at(index + 1).add(f"unreachable step: {ctx.at(index + 1).label}{them} can never run, because {why}; "
                                  f"remove {'them' if rest else 'it'} or move {exiting} after "
                                  f"{'them' if rest else 'it'}", "no steps after an exit in the same list")
            break
    return [item for item in checked if item is not INVALID]


STEPS: Final = Check("a list of steps, each a mapping with one of " + quoted(STEP_KINDS), _steps)


def _path_name() -> Check:
    names = reference("a path name")

    def run(value: Json, ctx: FieldErrors) -> Json:
        if value == HOLDOUT:
            ctx.add(f"a split path cannot be named {HOLDOUT!r}: that name records the profiles the holdout keeps "
                    f"out; expected another name ({NAME_HELP})", names.expected)
            return INVALID
        return names(value, ctx)

    return Check(names.expected, run)


PATH: Final = nested({"weight": required(positive_number()), "steps": required(STEPS)})
PATH_NAME: Final = _path_name()


def _paths(value: Json, ctx: FieldErrors) -> Json:
    expected = PATHS.expected
    if not isinstance(value, dict):
        return ctx.reject(value, expected)
    if not value:
        ctx.add(f"{ctx.label} is empty; a split needs at least one path; expected {expected}", expected)
        return INVALID
    out: JsonObject = {}
    for name, path in value.items():
        if PATH_NAME(name, ctx.at(name)) is INVALID:
            continue
        checked = PATH(path, ctx.at(name))
        if checked is not INVALID:
            out[name] = checked
    return out


PATHS: Final = Check(f"a mapping of path names ({NAME_HELP}) to {{weight, steps}}", _paths)

DELAY_HELP: Final = "a duration such as '45m', or {until: 'HH:MM'} for a local time of day"
_UNTIL: Final = nested({"until": required(time_of_day())})


def _delay(value: Json, ctx: FieldErrors) -> Json:
    if isinstance(value, dict):
        return _UNTIL(value, ctx)
    try:
        parse_duration(value)
    except ValidationError:
        return ctx.reject(value, DELAY_HELP)
    return value


EXIT_REASON: Final = reference("an exit reason, e.g. 'converted'")
RESERVED_REASONS: Final = (HOLDOUT, "exit_when")
"""Exit reasons the engine gives itself: a split's holdout and the journey's ``exit_when`` rule."""


def _exit_reason(value: Json, ctx: FieldErrors) -> Json:
    if value in RESERVED_REASONS:
        ctx.add(f"invalid {ctx.label} {value!r}: the engine records {quoted(RESERVED_REASONS)} for a split's holdout "
                f"and for exit_when, so an exit step cannot use them; expected another reason", EXIT_REASON.expected)
        return INVALID
    return EXIT_REASON(value, ctx)


STEP: Final = exactly_one("step kind", {
    "send": nested({
        "channel": required(reference("a Channel name")),
        "template": required(reference("a Template name")),
        "tags": optional(list_of(reference("a tag, counted by frequency caps per tag"), unique=True)),
        "subscription_group": optional(reference("a SubscriptionGroup name, for this message only")),
    }),
    "delay": Check(DELAY_HELP, _delay),
    "wait_for": nested({
        "event": required(text("an event name, e.g. 'Order Completed'")),
        "correlate": optional(text("an event property name that must equal the entry event's, e.g. 'cart_id'")),
        "timeout": required(duration()),
        "on_event": optional(STEPS),
        "on_timeout": optional(STEPS),
    }),
    "branch": nested({
        "if": required(rule("a rule, e.g. consent.marketing_sms")),
        "then": required(STEPS),
        "else": optional(STEPS),
    }),
    "split": nested({"holdout": optional(percentage()), "paths": required(PATHS)}),
    "exit": Check(EXIT_REASON.expected, _exit_reason),
    "update_trait": nested({"name": required(text("a trait name")), "value": required(any_value("a value"))}),
    "webhook": nested({"channel": required(reference("a Channel name of type webhook"))}),
})


def _step_id(value: Json, ctx: FieldErrors) -> Json:
    if isinstance(value, int | float) and not isinstance(value, bool):
        ctx.add(f"invalid {ctx.label} {value}: a step id is a string; write it in quotes, '{value}'; expected "
                f"{STEP_ID_HELP}", STEP_ID_HELP)
        return INVALID
    if isinstance(value, str) and STEP_ID.fullmatch(value):
        return value
    return ctx.reject(value, STEP_ID_HELP)


def _non_empty_steps(value: Json, ctx: FieldErrors) -> Json:
    if value == []:
        ctx.add("a journey needs at least one step; expected " + STEPS.expected, STEPS.expected)
        return INVALID
    return STEPS(value, ctx)


FIELDS: Final = {
    "description": optional(text()),
    "purpose": required(reference("a consent purpose name; a profile enters and is sent to only with it")),
    "priority": optional(whole_number(0), default=0),
    "subscription_group": optional(reference("a SubscriptionGroup name: people who left it get no message")),
    "entry": required(exactly_one("entry trigger", {
        "event": text("an event name, e.g. 'Cart Added'"),
        "segment_entered": reference("a Segment name"),
        "segment_exited": reference("a Segment name"),
        "schedule": exactly_one("schedule", {"every": duration(), "at": time_of_day()}),
    })),
    "reentry": optional(reentry(), default="never"),
    "exit_when": optional(rule('a rule, checked on every event, e.g. count("Order Completed", within=1h) >= 1')),
    "goal": optional(nested({
        "event": required(text("an event name, e.g. 'Order Completed'")),
        "within": required(duration()),
        "where": optional(rule("a rule over the goal event's properties, e.g. event.revenue > 0",
                               event_filter=True)),
    })),
    "quiet_hours": optional(nested({
        "start": required(time_of_day()),
        "end": required(time_of_day()),
        "action": optional(one_of("hold", "drop"), default="hold"),
    })),
    "steps": required(Check(STEPS.expected, _non_empty_steps)),
    "audience": optional(nested({
        "segment": optional(reference("a Segment name")),
        "rule": optional(rule('a segment rule, e.g. computed.orders_90d == 0 and exists(traits.email)')),
    })),
    "on_publish": optional(one_of(*PUBLISH_POLICIES)),
    "migrate": optional(mapping(Check(STEP_ID_HELP, _step_id), keys=Check(STEP_ID_HELP, _step_id))),
}


def validate(doc: JsonObject, ctx: FieldErrors) -> JsonObject:
    """Check a Journey; quiet hours need a window, a split's paths need their own names, an audience
    belongs to a schedule entry, and a ``migrate`` map to ``on_publish: migrate``."""
    spec = check_document(doc, ctx, FIELDS)
    _check_lifecycle(doc, ctx)
    quiet = spec.get("quiet_hours")
    if isinstance(quiet, dict) and quiet.get("start") is not None and quiet.get("start") == quiet.get("end"):
        ctx.add(f"quiet_hours start and end are both {quiet['start']!r}, which is no window at all; expected an "
                "end different from the start (a window may cross midnight, e.g. '21:00' to '08:00')",
                "an end different from the start", "quiet_hours", "end")
    return spec


def _check_lifecycle(doc: JsonObject, ctx: FieldErrors) -> None:
    """An audience is for schedules and names something; ``migrate`` goes with ``on_publish: migrate``. (What
    the map names is checked against both versions by ``publish_problems``.)"""
    audience, entry = doc.get("audience"), doc.get("entry")
    schedule = isinstance(entry, dict) and "schedule" in entry
    if isinstance(audience, dict) and not schedule:
        ctx.add(f"audience is for a journey entered on a schedule (entry: {{schedule: ...}}); this one is entered "
                f"by {show(entry)}, which enrolls whoever triggers it; remove audience or enter on a schedule",
                "an audience only with entry: {schedule: ...}", "audience")
    elif isinstance(audience, dict) and audience.get("segment") is None and audience.get("rule") is None:
        ctx.add("audience is empty; expected a segment, a rule, or both (the segment's members matching the rule), "
                "e.g. {segment: at_risk}", AUDIENCE_HELP, "audience")
    policy = doc.get("on_publish") or "drain"
    if doc.get("migrate") is not None and policy != "migrate":
        ctx.add(f"migrate maps steps for on_publish: migrate, but on_publish is {policy!r}; set on_publish: "
                "migrate or remove migrate", "migrate only with on_publish: migrate", "migrate")
    if policy == "migrate" and doc.get("migrate") is None:
        ctx.add("on_publish: migrate needs migrate, a mapping of steps of the version being replaced to steps of "
                "this one, e.g. migrate: {'2': '4'}", MIGRATE_HELP, "on_publish")
    if policy == "migrate" and doc.get("migrate") == {}:
        ctx.add(f"migrate is empty, so nobody would move; expected {MIGRATE_HELP} (or on_publish: drain)",
                MIGRATE_HELP, "migrate")


def always_exits(steps: list[Json]) -> bool:
    """Whether every way through ``steps`` (validated) ends in an ``exit``; a split's holdout exits too."""
    return any(_step_exits(step) for step in steps)


def _step_exits(step: Json) -> bool:
    if not isinstance(step, dict) or len(step) != 1:
        return False
    [(kind, body)] = step.items()
    if kind == "exit":
        return True
    if not isinstance(body, dict):
        return False
    if kind == "branch":
        return always_exits(body.get("then", [])) and always_exits(body.get("else", []))
    if kind == "wait_for":
        return always_exits(body.get("on_event", [])) and always_exits(body.get("on_timeout", []))
    if kind == "split":
        paths = body.get("paths", {})
        return bool(paths) and all(always_exits(path.get("steps", [])) for path in paths.values())
    return False


def walk_steps(steps: Json, path: Path) -> Iterator[tuple[Path, str, JsonObject]]:
    """Every step below ``steps`` (validated) with its field path, kind and body, in document order."""
    if not isinstance(steps, list):
        return
    for index, step in enumerate(steps):
        if not isinstance(step, dict) or len(step) != 1:
            continue
        [(kind, body)] = step.items()
        here = (*path, index, kind)
        yield here, kind, body if isinstance(body, dict) else {}
        if not isinstance(body, dict):
            continue
        for key in ("on_event", "on_timeout", "then", "else"):
            yield from walk_steps(body.get(key), (*here, key))
        paths = body.get("paths")
        if isinstance(paths, dict):
            for name, branch in paths.items():
                if isinstance(branch, dict):
                    yield from walk_steps(branch.get("steps"), (*here, "paths", name, "steps"))


def _named(spec: JsonObject) -> Iterator[tuple[str, str, str]]:
    """``(field path, kind, name)`` of every resource the journey names."""
    for path, kind, body in walk_steps(spec.get("steps"), ("steps",)):
        for key, target in (("channel", "Channel"), ("template", "Template")):
            name = body.get(key)
            if kind in ("send", "webhook") and isinstance(name, str):
                yield render_path((*path, key)), target, name


def references(spec: JsonObject) -> set[tuple[str, str]]:
    """The ``(kind, name)`` of each Template and Channel a validated journey spec sends through."""
    return {(kind, name) for _, kind, name in _named(spec)}


def check_references(spec: JsonObject, known: Mapping[str, set[str]]) -> list[tuple[str, str]]:
    """``(field path, message)`` for each Template or Channel name of ``spec`` that ``known`` (names by
    kind, e.g. ``{"Template": {...}, "Channel": {...}}``) does not hold, with the nearest known name."""
    problems: list[tuple[str, str]] = []
    for field, kind, name in _named(spec):
        names = known.get(kind, set())
        if name not in names:
            options = f"one of {quoted(sorted(names))}" if names else f"a {kind} name, but none is defined"
            problems.append((field, f"unknown {kind} {name!r}{did_you_mean(name, names)} in {field}; "
                                    f"expected {options}"))
    return problems


def check_deliveries(spec: JsonObject, channels: Mapping[str, str],
                     templates: Mapping[str, str]) -> list[tuple[str, str]]:
    """``check_references`` against the workspace's channels (name -> type) and templates (name -> the
    channel they are written for), then: a ``send`` goes through the template's own channel and not a
    webhook channel, and a ``webhook`` step through a webhook channel."""
    problems = check_references(spec, {"Channel": set(channels), "Template": set(templates)})
    if problems:
        return problems
    for path, kind, body in walk_steps(spec.get("steps"), ("steps",)):
        channel = body.get("channel")
        if not isinstance(channel, str):
            continue
        field = render_path((*path, "channel"))
        if kind == "webhook" and channels[channel] != "webhook":
            problems.append((field, f"{field} names channel {channel!r} of type {channels[channel]!r}; a webhook "
                                    "step posts through a channel of type 'webhook'"))
        if kind != "send":
            continue
        if channels[channel] == "webhook":
            problems.append((field, f"{field} names webhook channel {channel!r}; a send step renders a template "
                                    "for an smtp, sms, push, inapp or offline channel (use a webhook step)"))
        template = body.get("template")
        if isinstance(template, str) and templates[template] != channel:
            problems.append((field, f"{field} is {channel!r} but template {template!r} is written for channel "
                                    f"{templates[template]!r}; expected {templates[template]!r}"))
    return problems


def publish_problems(conn: Conn, ws: str, current: Mapping[tuple[str, str], Resource],
                     final: Mapping[tuple[str, str], Resource], desired: Sequence[Resource]) -> list[JsonObject]:
    """What a journey says about the other resources and its own previous version, as error details: a
    schedule's audience (a schedule needs one; its segment must exist, also for journeys not in this apply,
    so a segment still in use cannot be deleted; its rule must be a segment rule over known fields), and a
    ``migrate`` map (every key a delay or wait_for step of the version being replaced, every value one of
    the new version). A journey's first version has nothing to migrate, so its keys are not checked."""
    from rapport.journeys.model import build
    from rapport.storage.sql import resources as resources_sql

    position = {(r.kind, r.name): i + 1 for i, r in enumerate(desired)}
    segments = sorted(name for kind, name in final if kind == "Segment")
    details: list[JsonObject] = []

    def add(resource: Resource, field: str, message: str, expected: str) -> None:
        details.append({"document": position.get(resource.key, 0), "kind": "Journey", "name": resource.name,
                        "field": field, "message": message, "expected": expected})

    rules: list[tuple[Resource, str]] = []
    for (kind, _name), resource in sorted(final.items()):
        if kind != "Journey":
            continue
        spec, audience = resource.spec, resource.spec.get("audience")
        audience = audience if isinstance(audience, dict) else {}
        segment = audience.get("segment")
        if isinstance(segment, str) and segment not in segments:
            options = f"one of {quoted(segments)}" if segments else "a Segment name, but none is defined"
            add(resource, "audience.segment", f"unknown Segment {segment!r}{did_you_mean(segment, segments)} in "
                f"audience.segment of journey {resource.name!r}; expected {options}", "the name of a Segment")
        if resource.key not in position:
            continue
        entry = spec.get("entry")
        if isinstance(entry, dict) and "schedule" in entry and not audience:
            add(resource, "audience", f"journey {resource.name!r} is entered on a schedule but has no audience, so "
                "it would enroll nobody; expected audience: {segment: <name>} and/or {rule: <rule>}", AUDIENCE_HELP)
        if isinstance(audience.get("rule"), str):
            rules.append((resource, str(audience["rule"])))
        previous = current.get(resource.key)
        if spec.get("on_publish") == "migrate" and isinstance(spec.get("migrate"), dict) and (
                previous is None or previous.spec != spec):
            new = build(spec)
            old = build(previous.spec) if previous is not None else None
            version = resources_sql.latest_version(conn, ws, "Journey", resource.name)
            for field, message in _migration_problems(spec["migrate"], old, new, version):
                add(resource, field, message, MIGRATE_HELP)
    if rules:
        details += _audience_rule_problems(conn, ws, final, rules, position)
    return details


def _waits(journey: JourneyModel) -> list[str]:
    from rapport.journeys.model import DelayStep, WaitStep

    return [step_id for step_id, step in journey.by_id.items() if isinstance(step, DelayStep | WaitStep)]


def _migration_problems(migrate: Mapping[str, Json], old: JourneyModel | None, new: JourneyModel,
                        version: int) -> Iterator[tuple[str, str]]:
    """``(field, message)`` for each key of ``migrate`` that is not a wait of ``old`` (version ``version``) and
    each value that is not a wait of ``new``."""
    new_waits, old_waits = _waits(new), _waits(old) if old is not None else []
    for key, value in migrate.items():
        field = f"migrate.{key}"
        if old is not None and key not in old_waits:
            what = (f"is a {_kind(old, key)} step of version {version}, where no enrollment waits" if key in old.by_id
                    else f"is not a step of version {version}, the version being replaced")
            yield field, (f"migrate key {key!r} {what}; enrollments wait only at delay and wait_for steps; expected "
                          f"one of {quoted(old_waits) or 'none (that version has no delay or wait_for step)'}")
        if value not in new_waits:
            what = (f"is a {_kind(new, str(value))} step of this version; an enrollment can only be moved to a step "
                    "where it waits" if value in new.by_id else "is not a step of this version")
            yield field, (f"migrate target {value!r} (for {key!r}) {what}; expected a delay or wait_for step: one "
                          f"of {quoted(new_waits) or 'none (this version has no delay or wait_for step)'}")


def _kind(journey: JourneyModel, step_id: str) -> str:
    name = type(journey.by_id[step_id]).__name__.removesuffix("Step").lower()
    return {"wait": "wait_for", "updatetrait": "update_trait"}.get(name, name)


def _audience_rule_problems(conn: Conn, ws: str, final: Mapping[tuple[str, str], Resource],
                            rules: Sequence[tuple[Resource, str]], position: Mapping[tuple[str, str], int]
                            ) -> list[JsonObject]:
    """Each audience rule checked as a segment rule of the workspace once applied."""
    from rapport.segments.check import check_rule
    from rapport.storage.sql import workspaces as ws_sql
    from rapport.workspaces.runtime import build_runtime

    row = ws_sql.workspace(conn, ws)
    if row is None:
        return []
    rt = build_runtime(row, -1, [(r.kind, r.spec, 0) for r in final.values()])
    details: list[JsonObject] = []
    for resource, source in rules:
        try:
            check_rule(source, rt, rt.segments.keys())
        except ValidationError as exc:
            details.append({"document": position.get(resource.key, 0), "kind": "Journey", "name": resource.name,
                            "field": "audience.rule", "message": f"invalid rule in audience.rule: {exc.message}",
                            "expected": "a segment rule over known fields"})
    return details


JOURNEY: Final = register(KindSpec("Journey", validate, tuple(FIELDS)))
