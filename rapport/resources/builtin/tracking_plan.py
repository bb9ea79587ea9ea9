"""TrackingPlan: the JSON Schemas that incoming events, traits and page properties must match."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from jsonschema import Draft202012Validator
from referencing.exceptions import Unresolvable

from rapport.resources.checks import boolean, list_of, mapping, nested, one_of, reference, text
from rapport.resources.fields import (
    Check,
    FieldErrors,
    Fields,
    did_you_mean,
    optional,
    quoted,
    render_path,
    required,
)
from rapport.resources.kinds import KindSpec, register
from rapport.resources.model import canonical_json
from rapport.types import Json, JsonObject

MODES: Final = ("reject", "flag", "quarantine")
CALLS: Final = {"identify": "traits", "page": "properties", "group": "traits"}
"""Segment calls other than ``track`` that a plan may constrain, and the payload each one checks."""

_META: Final = Draft202012Validator(Draft202012Validator.META_SCHEMA)


def json_schema() -> Check:
    """A JSON Schema (draft 2020-12); each of its errors points at the field inside the schema."""
    expected = "a JSON Schema (draft 2020-12) as a mapping"

    def run(value: Json, ctx: FieldErrors) -> Json:
        if not isinstance(value, dict):
            return ctx.reject(value, expected)
        errors = sorted(_META.iter_errors(value), key=lambda error: [str(p) for p in error.absolute_path])
        for error in errors:
            at = tuple(error.absolute_path)
            ctx.add(f"invalid JSON Schema in {ctx.at(*at).label}: {_explain(error)}", expected, *at)
        return value

    return Check(expected, run)


def _explain(error: Any) -> str:
    """The meta-schema's message; for a bad ``type`` it names the valid types instead of 'anyOf'."""
    for sub in error.context or ():
        if sub.validator == "enum" and isinstance(sub.instance, str):
            options = [str(option) for option in sub.validator_value]
            hint = did_you_mean(sub.instance, options)
            return f"unknown type {sub.instance!r}{hint}; expected one of {quoted(options)}"
    return str(error.message)


ENTRY: Final[Fields] = {
    "schema": required(json_schema()),
    "purposes": optional(
        list_of(reference("a consent purpose name"), unique=True, expected="a list of consent purpose names")
    ),
}

FIELDS: Final[Fields] = {
    "mode": optional(one_of(*MODES), default="reject"),
    "allow_unplanned": optional(boolean(), default=True),
    "events": optional(mapping(nested(ENTRY), keys=text("an event name")), default={}),
    **{call: optional(nested(ENTRY)) for call in CALLS},
    "description": optional(text()),
}

TRACKING_PLAN: Final = register(KindSpec.from_fields("TrackingPlan", FIELDS))


@dataclass(frozen=True, slots=True)
class CompiledPlan:
    """A tracking plan ready to check events: one compiled validator per planned event and call."""

    allow_unplanned: bool
    events: Mapping[str, Any]
    calls: Mapping[str, Any]
    purposes: Mapping[str, tuple[str, ...]]

    def violations(self, message: Mapping[str, Json]) -> list[str]:
        """Why a Segment message breaks the plan, as ``path: problem`` lines; empty when it is valid."""
        call = message.get("type") or ("track" if "event" in message else None)
        if call == "track":
            event = message.get("event")
            if not isinstance(event, str) or not event:
                return [f"event: a track call needs an event name, got {event!r}"]
            validator = self.events.get(event)
            if validator is None:
                if self.allow_unplanned:
                    return []
                return [f"event: {event!r} is not in the tracking plan{did_you_mean(event, self.events)}"]
            return _errors(validator, message.get("properties"), "properties")
        if isinstance(call, str) and call in self.calls:
            payload = CALLS[call]
            return _errors(self.calls[call], message.get(payload), payload)
        return []


def _errors(validator: Any, payload: Json, root: str) -> list[str]:
    instance = {} if payload is None else payload
    try:
        found = [
            f"{render_path((root, *error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(instance)
        ]
    except Unresolvable as exc:
        return [f"{root}: the plan's schema has a reference that cannot be resolved: {exc}"]
    return sorted(found)


_CACHE: OrderedDict[str, CompiledPlan] = OrderedDict()
_CACHE_SIZE: Final = 64


def compile_plan(plan_spec: JsonObject) -> CompiledPlan:
    """The compiled form of a TrackingPlan spec, reused while the spec is unchanged."""
    digest = hashlib.sha256(canonical_json(plan_spec)).hexdigest()
    compiled = _CACHE.get(digest)
    if compiled is not None:
        _CACHE.move_to_end(digest)
        return compiled
    events: dict[str, JsonObject] = plan_spec.get("events") or {}
    compiled = CompiledPlan(
        allow_unplanned=bool(plan_spec.get("allow_unplanned", True)),
        events={name: _validator(entry) for name, entry in events.items()},
        calls={call: _validator(plan_spec[call]) for call in CALLS if plan_spec.get(call)},
        purposes={name: tuple(entry.get("purposes", ())) for name, entry in events.items()},
    )
    _CACHE[digest] = compiled
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return compiled


def _validator(entry: JsonObject) -> Any:
    return Draft202012Validator(entry["schema"], format_checker=Draft202012Validator.FORMAT_CHECKER)


def validate_event(plan_spec: JsonObject, event: Mapping[str, Json]) -> list[str]:
    """The violations of a Segment message (track, identify, page, group) against a TrackingPlan spec.

    A track call is checked against the schema of its event name (``properties``); an unplanned
    event passes unless ``allow_unplanned`` is false. Identify and group check ``traits`` and page
    checks ``properties`` when the plan has a schema for them. Empty when the message is valid.
    """
    return compile_plan(plan_spec).violations(event)
