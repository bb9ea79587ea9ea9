"""Experiments and metrics as the results read them, compiled from the workspace's validated specs (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

from rapport.durations import parse_duration
from rapport.errors import NotFoundError
from rapport.resources.builtin.experiment import control_of, split_of
from rapport.types import DAY, JsonObject, Millis

HOLDOUT_ARM = "holdout"
"""The arm of a journey split's holdout: the name the journey records for the profiles it keeps out."""

MetricType = Literal["conversion", "revenue", "count", "retention", "ratio"]


@dataclass(frozen=True, slots=True)
class Measure:
    """What one unit contributes: events named ``event`` (any event for None), counted, or their ``prop`` summed,
    or (``exists``) 1 when there is at least one; optionally only events whose properties pass ``where``."""

    event: str | None
    prop: str | None = None
    where: str | None = None
    exists: bool = False


@dataclass(frozen=True, slots=True)
class MetricDef:
    """A Metric resource: per unit, ``value`` (and for a ratio ``denominator``) over ``[start, end)`` after the
    first exposure; the CUPED covariate is the same measure over the equal-length span just before exposure."""

    name: str
    type: MetricType
    value: Measure
    start: Millis
    end: Millis
    denominator: Measure | None = None
    direction: Literal["increase", "decrease"] = "increase"
    min_detectable_effect: float | None = None

    @property
    def span(self) -> Millis:
        return self.end - self.start

    @property
    def binary(self) -> bool:
        return self.type in ("conversion", "retention")


def metric_def(spec: JsonObject) -> MetricDef:
    """The MetricDef of a validated Metric spec."""
    kind = cast(MetricType, spec["type"])
    direction = cast(Literal["increase", "decrease"], spec.get("direction", "increase"))
    mde = spec.get("min_detectable_effect")
    mde_value = float(mde) if isinstance(mde, int | float) else None
    name = str(spec["name"])
    if kind == "retention":
        day = int(spec["day"])
        return MetricDef(name, kind, Measure(spec.get("event"), where=spec.get("where"), exists=True),
                         day * DAY, (day + 1) * DAY, direction=direction, min_detectable_effect=mde_value)
    window = parse_duration(spec["window"])
    if kind == "ratio":
        num, den = spec["numerator"], spec["denominator"]
        return MetricDef(name, kind, Measure(num["event"], num.get("property"), num.get("where")), 0, window,
                         Measure(den["event"], den.get("property"), den.get("where")), direction, mde_value)
    measure = Measure(spec["event"], spec.get("property") if kind == "revenue" else None, spec.get("where"),
                      exists=kind == "conversion")
    return MetricDef(name, kind, measure, 0, window, direction=direction, min_detectable_effect=mde_value)


@dataclass(frozen=True, slots=True)
class VariantDef:
    name: str
    weight: float
    block: str | None = None


@dataclass(frozen=True, slots=True)
class ExperimentDef:
    """An Experiment resource with its variants resolved (a journey experiment's are the split's paths)."""

    name: str
    purpose: str
    status: str
    variants: tuple[VariantDef, ...]
    control: str
    metrics: tuple[str, ...]
    guardrails: tuple[str, ...]
    segments: tuple[str, ...]
    placement: str | None = None
    journey: str | None = None
    split: str | None = None
    holdout: float = 0.0
    traffic: float = 100.0
    alpha: float = 0.05
    salt: str = ""
    when: str | None = None
    holdout_arm: bool = False
    """A journey split's holdout is compared as the arm ``holdout`` (its units are exposed with no variant)."""

    @property
    def source(self) -> str:
        """The exposure source this experiment's units are recorded with."""
        if self.placement is not None:
            return f"placement:{self.placement}"
        return f"journey:{self.journey}/{self.split}"


def experiment_def(spec: JsonObject, specs: Mapping[str, Mapping[str, JsonObject]]) -> ExperimentDef:
    """The ExperimentDef of a validated Experiment spec; ``specs`` (kind → name → spec) resolves a journey split."""
    raw = spec.get("variants")
    variants: list[VariantDef] = []
    if isinstance(raw, dict):
        variants = [VariantDef(str(n), float(v.get("weight", 1)), v.get("block")) for n, v in raw.items()]
    journey, split = spec.get("journey"), spec.get("split")
    holdout_arm = False
    if isinstance(journey, str) and isinstance(split, str):
        journey_spec = specs.get("Journey", {}).get(journey)
        found = split_of(journey_spec, split) if journey_spec is not None else None
        if found is not None:
            # The journey's weights are the ones the split assigns with, whatever the experiment says; its
            # holdout is an arm of its own (and the control, unless a path is named 'control').
            paths, held = found
            total = sum(weight for _, weight in paths)
            variants = [VariantDef(path, (100.0 - held) * weight / total) for path, weight in paths]
            if held > 0:
                holdout_arm = True
                variants.insert(0, VariantDef(HOLDOUT_ARM, held))
    names = {v.name: v for v in variants}
    control = control_of(names) if names else "control"
    if holdout_arm and "control" not in names:
        control = HOLDOUT_ARM
    alpha = spec.get("alpha")
    return ExperimentDef(
        name=str(spec["name"]), purpose=str(spec["purpose"]), status=str(spec.get("status", "running")),
        variants=tuple(variants), control=control, holdout_arm=holdout_arm,
        metrics=tuple(spec.get("metrics") or ()), guardrails=tuple(spec.get("guardrails") or ()),
        segments=tuple(spec.get("segments") or ()), placement=spec.get("placement"),
        journey=journey if isinstance(journey, str) else None, split=split if isinstance(split, str) else None,
        holdout=float(spec.get("holdout", 0)), traffic=float(spec.get("traffic", 100)),
        alpha=float(alpha) if isinstance(alpha, float) else 0.05, salt=str(spec.get("salt") or spec["name"]),
        when=spec.get("when"))


def experiments(specs: Mapping[str, Mapping[str, JsonObject]]) -> dict[str, ExperimentDef]:
    """Every Experiment of the workspace, by name."""
    return {name: experiment_def(spec, specs) for name, spec in sorted(specs.get("Experiment", {}).items())}


def experiment(specs: Mapping[str, Mapping[str, JsonObject]], name: str) -> ExperimentDef:
    """The experiment ``name``; ``NotFoundError`` (404) when the workspace has none of that name."""
    spec = specs.get("Experiment", {}).get(name)
    if spec is None:
        raise NotFoundError(f"no experiment {name!r}", code="experiment_not_found")
    return experiment_def(spec, specs)


def metrics(specs: Mapping[str, Mapping[str, JsonObject]]) -> dict[str, MetricDef]:
    """Every Metric of the workspace, by name."""
    return {name: metric_def(spec) for name, spec in specs.get("Metric", {}).items()}


def split_experiments(specs: Mapping[str, Mapping[str, JsonObject]]) -> dict[tuple[str, str], str]:
    """(journey, split step id) → the experiment measuring that split, for recording journey exposures."""
    out: dict[tuple[str, str], str] = {}
    for name, spec in sorted(specs.get("Experiment", {}).items()):
        journey, split = spec.get("journey"), spec.get("split")
        if isinstance(journey, str) and isinstance(split, str):
            out.setdefault((journey, split), name)
    return out
