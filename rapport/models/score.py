"""Pure scoring of a trained propensity model from its stored numeric parameters.

A trained model is a standardized logistic regression (means, scales, coefficients, missing
indicators) followed by a monotone calibration map, all plain numbers. Scoring is a dot product
and one interpolation: no scikit-learn at serve time, a few microseconds per call, and every
score explains itself as per-feature contributions in log-odds.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from rapport.types import Json, JsonObject

PARAMETERS_SCHEMA = 1
"""Schema version of the stored parameters document (`ScoringModel.to_json`)."""

CalibrationMethod = Literal["isotonic", "platt", "identity"]


class Reason(NamedTuple):
    """One feature's share of a score: its signed contribution in log-odds (a tuple: a score makes one per
    feature)."""

    feature: str
    value: float | None
    contribution: float


@dataclass(frozen=True, slots=True)
class Scored:
    """A calibrated probability and the reasons behind it, largest absolute contribution first.

    The contributions of all reasons plus the model's intercept add up to the raw (uncalibrated)
    log-odds, so the reasons are an exact decomposition, not an approximation.
    """

    probability: float
    reasons: tuple[Reason, ...]
    raw_probability: float = 0.0
    log_odds: float = 0.0


@dataclass(frozen=True, slots=True)
class Calibration:
    """A monotone map from raw probability to calibrated probability.

    `isotonic`: piecewise-linear through (xs[i], ys[i]), clipped to the ends (as isotonic
    regression predicts). `platt`: 1 / (1 + exp(a * logit + b)) on the raw log-odds.
    `identity`: the raw probability unchanged (used when calibration data was degenerate).
    """

    method: CalibrationMethod
    xs: tuple[float, ...] = ()
    ys: tuple[float, ...] = ()
    a: float = 0.0
    b: float = 0.0

    def apply(self, raw_probability: float, log_odds: float) -> float:
        """Calibrated probability for a raw probability (and its log-odds, for Platt)."""
        if self.method == "identity":
            return raw_probability
        if self.method == "platt":
            return _sigmoid(-(self.a * log_odds + self.b))
        xs, ys = self.xs, self.ys
        if not xs:
            return raw_probability
        if raw_probability <= xs[0]:
            return ys[0]
        if raw_probability >= xs[-1]:
            return ys[-1]
        i = bisect_right(xs, raw_probability)
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        if x1 == x0:
            return y1
        return y0 + (y1 - y0) * (raw_probability - x0) / (x1 - x0)

    def to_json(self) -> JsonObject:
        """The calibration as JSON numbers."""
        if self.method == "isotonic":
            return {"method": "isotonic", "xs": list(self.xs), "ys": list(self.ys)}
        if self.method == "platt":
            return {"method": "platt", "a": self.a, "b": self.b}
        return {"method": "identity"}

    @staticmethod
    def from_json(doc: Mapping[str, Json]) -> Calibration:
        """Rebuild a calibration stored by `to_json`."""
        method = doc.get("method")
        if method == "isotonic":
            return Calibration("isotonic", tuple(map(float, doc["xs"])), tuple(map(float, doc["ys"])))
        if method == "platt":
            return Calibration("platt", a=float(doc["a"]), b=float(doc["b"]))
        return Calibration("identity")


@dataclass(frozen=True, slots=True)
class ScoringModel:
    """A trained model version, ready to score: standardized logistic regression + calibration.

    For feature i with value v: z = (v - means[i]) / scales[i] when v is present; when missing,
    z = 0 (the train mean) and the missing indicator adds `missing_coefficients[i]`. The raw
    log-odds are `intercept + sum(coefficients[i] * z)` + indicators.
    """

    name: str
    version: int
    features: tuple[str, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    coefficients: tuple[float, ...]
    missing_coefficients: tuple[float, ...]
    intercept: float
    calibration: Calibration

    _terms: tuple[tuple[str, float, float, float], ...] = field(init=False, repr=False, compare=False)
    """Per feature: (name, coefficient / scale, coefficient * mean / scale, missing coefficient)."""

    def __post_init__(self) -> None:
        terms = tuple((f, c / s, c * m / s, mc) for f, c, s, m, mc in zip(
            self.features, self.coefficients, self.scales, self.means, self.missing_coefficients, strict=True))
        object.__setattr__(self, "_terms", terms)

    def log_odds(self, values: Mapping[str, float | None]) -> float:
        """The raw (uncalibrated) log-odds for one row of feature values."""
        total = self.intercept
        for feature, slope, offset, missing in self._terms:
            v = values.get(feature)
            if not (type(v) is float and -math.inf < v < math.inf):  # the common case skips the checks
                v = _number(v)
            total += missing if v is None else slope * v - offset
        return total

    def probability(self, values: Mapping[str, float | None]) -> float:
        """The calibrated probability alone (``score`` without its reasons), for ranking many candidates."""
        total = self.log_odds(values)
        return self.calibration.apply(_sigmoid(total), total)

    def score(self, values: Mapping[str, float | None]) -> Scored:
        """Calibrated probability for one row of feature values, with its reasons."""
        parts: list[tuple[float, str, float | None, float]] = []
        total = self.intercept
        for feature, slope, offset, missing in self._terms:
            v = values.get(feature)
            if not (type(v) is float and -math.inf < v < math.inf):  # the common case skips the checks
                v = _number(v)
            c = missing if v is None else slope * v - offset
            total += c
            parts.append((-abs(c), feature, v, c))
        parts.sort()  # largest contribution first, ties by feature name
        raw = _sigmoid(total)
        return Scored(self.calibration.apply(raw, total), tuple([Reason(f, v, c) for _, f, v, c in parts]), raw, total)

    def to_json(self) -> JsonObject:
        """The stored parameters document: JSON numbers only."""
        return {
            "schema": PARAMETERS_SCHEMA,
            "features": list(self.features),
            "means": list(self.means),
            "scales": list(self.scales),
            "coefficients": list(self.coefficients),
            "missing_coefficients": list(self.missing_coefficients),
            "intercept": self.intercept,
            "calibration": self.calibration.to_json(),
        }

    @staticmethod
    def from_json(name: str, version: int, doc: Mapping[str, Json]) -> ScoringModel:
        """Rebuild a model version from its stored parameters document."""
        return ScoringModel(
            name=name,
            version=version,
            features=tuple(str(f) for f in doc["features"]),
            means=_floats(doc["means"]),
            scales=_floats(doc["scales"]),
            coefficients=_floats(doc["coefficients"]),
            missing_coefficients=_floats(doc["missing_coefficients"]),
            intercept=float(doc["intercept"]),
            calibration=Calibration.from_json(doc["calibration"]),
        )


def _floats(values: Sequence[Json]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _number(value: object) -> float | None:
    """A feature value as a float; None, booleans-as-numbers aside, non-numbers and NaN are missing."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        f = float(value)
        return None if math.isnan(f) or math.isinf(f) else f
    return None


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)
