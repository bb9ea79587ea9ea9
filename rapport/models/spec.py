"""A `Model` resource as the trainer and the scorer read it, and the computed trait its scores become.

Scores are written back as a hidden series per model (``$model:<name>``, property ``score``), one
bucket per scoring run holding the calibrated probability as its value. The ``write_to`` trait is an
ordinary ``last`` computed trait over that series, so the in-memory evaluator and the SQL compiler
read it as they read any other trait: at an instant, the latest score written at or before it;
before the first scoring, missing. No event can feed the series: it is kept out of the workspace's
event-fed series (``WorkspaceRuntime.series``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from rapport.durations import parse_duration
from rapport.profiles.computed import SeriesKey, TraitDef
from rapport.types import Json, Millis

Algorithm = Literal["logistic_regression"]
ALGORITHMS: Final = ("logistic_regression",)
SCORE_EVENT_PREFIX: Final = "$model:"
SCORE_PROPERTY: Final = "score"


@dataclass(frozen=True, slots=True)
class Target:
    """The label: whether ``event`` (matching ``where``) happens within ``within_ms`` after the cutoff;
    with ``negate``, whether it does not."""

    event: str
    within_ms: Millis
    negate: bool = False
    where: str | None = None


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    target: Target
    features: tuple[str, ...]
    algorithm: Algorithm
    purpose: str
    write_to: str | None = None
    audience: str | None = None
    """A segment rule choosing who is trained on and scored (everyone with the purpose when absent)."""
    description: str = ""

    @staticmethod
    def from_spec(spec: Mapping[str, Json]) -> ModelSpec:
        """From a checked `Model` resource spec."""
        target = spec["target"]
        return ModelSpec(
            name=str(spec["name"]),
            target=Target(str(target["event"]), parse_duration(str(target["within"])), bool(target.get("negate")),
                          str(target["where"]) if target.get("where") else None),
            features=tuple(str(f) for f in spec["features"]),
            algorithm="logistic_regression",
            purpose=str(spec.get("purpose") or "analytics"),
            write_to=str(spec["write_to"]) if spec.get("write_to") else None,
            audience=str(spec["audience"]) if spec.get("audience") else None,
            description=str(spec.get("description") or ""),
        )


def score_series(model: str) -> SeriesKey:
    """The hidden series holding a model's scores."""
    return SeriesKey(SCORE_EVENT_PREFIX + model, SCORE_PROPERTY)


def score_trait(spec: Mapping[str, Json]) -> TraitDef | None:
    """The computed trait a `Model` resource's ``write_to`` names, or None without ``write_to``."""
    write_to = spec.get("write_to")
    if not write_to:
        return None
    name = str(spec["name"])
    return TraitDef(name=str(write_to), aggregate="last", series=score_series(name),
                    purpose=str(spec.get("purpose") or "analytics"),
                    description=f"Calibrated score of model {name!r} (latest scoring at or before the instant)")
