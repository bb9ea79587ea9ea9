"""Experiment: variants of a placement, or the paths of a journey's split, measured by Metric resources.

An experiment runs on exactly one of a placement (``placement``) or a journey split (``journey`` and
``split``, the split step's id). The control is the variant named ``control``, else the first written. Its
purpose must need consent: ``necessary``, or a purpose on another legal basis, would assign and measure people
who never agreed to it. A journey experiment takes no ``when``: the journey chooses who reaches its split.
References to other resources are checked once the whole apply is known (``reference_problems``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Final

from rapport.consent.model import NECESSARY
from rapport.errors import ValidationError
from rapport.resources.checks import list_of, mapping, nested, one_of, reference, rule, text
from rapport.resources.fields import (
    Check,
    FieldErrors,
    check_document,
    did_you_mean,
    optional,
    required,
)
from rapport.resources.kinds import KindSpec, known_kinds, register
from rapport.types import Json, JsonObject

PERCENT_HELP: Final = "a percentage from 0 to 100, e.g. 10"
CONSENT_PURPOSE_HELP: Final = "a consent purpose that needs the person's consent, e.g. 'personalization'"
WEIGHT_HELP: Final = "a positive number, e.g. 50"


def _percent() -> Check:
    def run(value: Json, ctx: FieldErrors) -> Json:
        number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return value if number and 0 <= value <= 100 else ctx.reject(value, PERCENT_HELP)

    return Check(PERCENT_HELP, run)


def _weight() -> Check:
    def run(value: Json, ctx: FieldErrors) -> Json:
        number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return value if number and value > 0 else ctx.reject(value, WEIGHT_HELP)

    return Check(WEIGHT_HELP, run)


VARIANT: Final = nested({
    "weight": optional(_weight(), default=1),
    "block": optional(reference("a ContentBlock name")),
    "description": optional(text()),
})

METRICS_HELP: Final = "Metric names; the first is the primary metric"

FIELDS: Final = {
    "placement": optional(reference("a Placement name")),
    "journey": optional(reference("a Journey name")),
    "split": optional(text("the id of a split step of the journey, e.g. '6'")),
    "purpose": required(reference("a consent purpose name; people without it are not assigned nor counted")),
    "salt": optional(text("a non-empty salt for the assignment hash (default: the experiment's name)")),
    "status": optional(one_of("running", "stopped"), default="running"),
    "holdout": optional(_percent(), default=0),
    "traffic": optional(_percent(), default=100),
    "when": optional(rule("a rule choosing who may be assigned, e.g. traits.country == \"DE\"")),
    "variants": optional(mapping(VARIANT, keys=reference("a variant name"))),
    "metrics": required(list_of(reference("a Metric name"), unique=True, expected=METRICS_HELP)),
    "guardrails": optional(list_of(reference("a Metric name"), unique=True)),
    "segments": optional(list_of(reference("a Segment name"), unique=True)),
    "alpha": optional(Check("a significance level between 0 and 1, e.g. 0.05", lambda v, c: v
                            if isinstance(v, float) and 0 < v < 1 else c.reject(v, "a number between 0 and 1"))),
    "description": optional(text()),
    "owner": optional(text()),
}


def validate(doc: JsonObject, ctx: FieldErrors) -> JsonObject:
    """Check an Experiment: exactly one target, variants for a placement, at least one metric."""
    spec = check_document(doc, ctx, FIELDS)
    if doc.get("salt") is None and isinstance(spec.get("name"), str):
        spec["salt"] = spec["name"]
    placement, journey, split = (doc.get(k) is not None for k in ("placement", "journey", "split"))
    target = "exactly one of 'placement' or 'journey' (with 'split')"
    if placement and (journey or split):
        ctx.add("an experiment runs on a placement or on a journey split, not both; expected " + target, target,
                "journey" if journey else "split")
    elif not placement and not journey:
        ctx.add("an experiment needs 'placement', or 'journey' and 'split'; expected " + target, target,
                "placement")
    elif journey and not split:
        ctx.add("a journey experiment needs 'split': the id of the split step it measures; expected "
                + FIELDS["split"].check.expected, FIELDS["split"].check.expected, "split")
    elif split and not journey:
        ctx.add("'split' names a step of a journey; add 'journey'; expected " + target, target, "split")
    variants = spec.get("variants")
    if placement and doc.get("variants") is None:
        ctx.add("a placement experiment needs 'variants', e.g. {control: {weight: 50}, bold: {weight: 50, "
                "block: hero_bold}}", "a mapping of variant names to {weight, block?}", "variants")
    elif isinstance(variants, dict) and doc.get("variants") is not None and len(variants) < 2:
        ctx.add(f"an experiment needs at least two variants, got {len(variants)}", "two or more variants",
                "variants")
    if doc.get("metrics") == []:
        ctx.add("an experiment needs at least one metric; expected " + METRICS_HELP, METRICS_HELP, "metrics")
    if doc.get("purpose") == NECESSARY:
        ctx.add("an experiment cannot use the purpose 'necessary': it is always allowed, so people would be "
                "assigned and measured without their consent; expected " + CONSENT_PURPOSE_HELP,
                CONSENT_PURPOSE_HELP, "purpose")
    if journey and doc.get("when") is not None:
        ctx.add("a journey experiment takes no 'when': the journey's entry and its branch steps choose who reaches "
                "the split, and everyone who does takes a path; expected no 'when' with 'journey'",
                "no 'when' with 'journey'", "when")
    if isinstance(variants, dict) and journey:
        for name, body in variants.items():
            if isinstance(body, dict) and body.get("block") is not None:
                ctx.add(f"variant {name!r} of a journey experiment takes no block: the split's path decides what "
                        "is sent", "variants without 'block'", "variants", name, "block")
    return spec


EXPERIMENT: Final = register(KindSpec("Experiment", validate, tuple(FIELDS)))


def control_of(variants: Mapping[str, object]) -> str:
    """The control variant: the one named ``control``, else the first of ``variants`` (a stored spec keeps its
    keys sorted, so that is the first in name order)."""
    return "control" if "control" in variants else next(iter(variants))


def split_paths(journey: JsonObject, split: str) -> list[tuple[str, float]] | None:
    """(path, weight) of the split step ``split`` of a Journey spec, or None when it has no such split step."""
    found = split_of(journey, split)
    return None if found is None else found[0]


def split_of(journey: JsonObject, split: str) -> tuple[list[tuple[str, float]], float] | None:
    """(path, weight) of each path of the split step ``split`` of a Journey spec and its holdout percent, or
    None when the journey has no such split step."""
    # Imported on use: only experiments on journeys need the journey model.
    from rapport.journeys.model import SplitStep, build, walk

    try:
        built = build(dict(journey))
    except ValidationError:
        return None
    for step in walk(built.steps):
        if step.id == split and isinstance(step, SplitStep):
            return [(path.name, float(path.weight)) for path in step.paths], float(step.holdout_percent)
    return None


def split_ids(journey: JsonObject) -> list[str]:
    """The ids of every split step of a Journey spec (for error messages)."""
    from rapport.journeys.model import SplitStep, build, walk

    try:
        built = build(dict(journey))
    except ValidationError:
        return []
    return [step.id for step in walk(built.steps) if isinstance(step, SplitStep)]


def reference_problems(specs: Mapping[tuple[str, str], JsonObject]) -> Iterator[tuple[str, str, str, str]]:
    """``(kind, name, field, message)`` for each reference of an Experiment of the final resources ``specs`` that
    does not hold: its placement, journey and split, the variants' blocks (when ContentBlocks are known), metrics,
    guardrails, segments and purpose (which must need consent); and a journey experiment's variants, which must be
    the split's paths."""
    from rapport.consent.purposes import Catalog

    catalog = Catalog.from_resources([s for (k, _), s in specs.items() if k == "ConsentPurpose"])

    def of(kind: str) -> set[str]:
        return {name for k, name in specs if k == kind}

    metrics, segments, blocks = of("Metric"), of("Segment"), of("ContentBlock")
    purposes = set(catalog.names())

    def unknown(what: str, name: str, known: set[str]) -> str:
        return f"unknown {what} {name!r}{did_you_mean(name, known)}"

    for (kind, name), spec in sorted(specs.items()):
        if kind != "Experiment":
            continue
        placement, journey, split = spec.get("placement"), spec.get("journey"), spec.get("split")
        if isinstance(placement, str) and placement not in of("Placement"):
            yield kind, name, "placement", unknown("placement", placement, of("Placement"))
        if isinstance(journey, str):
            journey_spec = specs.get(("Journey", journey))
            if journey_spec is None:
                yield kind, name, "journey", unknown("journey", journey, of("Journey"))
            elif isinstance(split, str):
                paths = split_paths(journey_spec, split)
                if paths is None:
                    ids = split_ids(journey_spec)
                    listed = ", ".join(repr(i) for i in ids) if ids else "none"
                    yield kind, name, "split", (f"journey {journey!r} has no split step {split!r}; its split steps: "
                                                f"{listed}")
                elif isinstance(spec.get("variants"), dict):
                    given, wanted = list(spec["variants"]), [p for p, _ in paths]
                    if sorted(given) != sorted(wanted):
                        yield kind, name, "variants", (f"the variants of an experiment on split {split!r} of journey "
                                                       f"{journey!r} are its paths {wanted}, not {given}")
        variants = spec.get("variants")
        if isinstance(variants, dict) and "ContentBlock" in known_kinds():
            for variant, body in variants.items():
                block = body.get("block") if isinstance(body, dict) else None
                if isinstance(block, str) and block not in blocks:
                    yield kind, name, f"variants.{variant}.block", unknown("content block", block, blocks)
        for field in ("metrics", "guardrails"):
            for index, metric in enumerate(spec.get(field) or []):
                if metric not in metrics:
                    yield kind, name, f"{field}[{index}]", unknown("metric", str(metric), metrics)
        for index, segment in enumerate(spec.get("segments") or []):
            if segment not in segments:
                yield kind, name, f"segments[{index}]", unknown("segment", str(segment), segments)
        purpose = spec.get("purpose")
        if isinstance(purpose, str) and purpose not in purposes:
            yield kind, name, "purpose", unknown("consent purpose", purpose, purposes)
        elif isinstance(purpose, str) and purpose != NECESSARY and not catalog.get(purpose).needs_consent:
            basis = catalog.get(purpose).legal_basis
            yield kind, name, "purpose", (f"consent purpose {purpose!r} has legal basis {basis!r}: it is allowed "
                                          "without anyone's consent, so an experiment cannot use it; expected "
                                          + CONSENT_PURPOSE_HELP)
