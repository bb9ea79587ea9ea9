"""Fitting a propensity model: seeded split, standardized logistic regression, calibration, test metrics.

Pure over its inputs (rows of feature values and labels, sorted by profile id by the caller): the
same data and seed give the same parameters. scikit-learn is imported here only; what comes out is a
``ScoringModel`` of plain numbers that ``rapport.models.score`` serves without it.

Rows are split by a keyed hash of the profile id: 60 % train, 20 % calibration, 20 % test. Missing
values are imputed with the train mean and flagged by a missing indicator (a column only for features
missing somewhere in the train split). The calibration map is fitted on the calibration split:
isotonic regression from ``ISOTONIC_MIN`` rows on, Platt scaling below (isotonic overfits small
samples); metrics are measured on the test split with the calibrated probabilities.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rapport.errors import ValidationError
from rapport.models.score import Calibration, ScoringModel
from rapport.types import JsonObject

Part = Literal["train", "calibration", "test"]
MIN_TRAIN = 20
"""Fewer training rows (or one class only) is reported as ``insufficient_data`` rather than fitted."""
ISOTONIC_MIN = 1000
ECE_BINS = 10
REGULARIZATION_C = 1.0


@dataclass(frozen=True, slots=True)
class Dataset:
    """One row per profile: its id, its feature values (in ``features`` order) and its 0/1 label."""

    features: tuple[str, ...]
    ids: tuple[str, ...]
    rows: tuple[tuple[float | None, ...], ...]
    labels: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Metrics:
    """Measured on the test split with calibrated probabilities (AUC also before calibration)."""

    n: int
    positives: int
    base_rate: float | None
    auc: float | None
    auc_raw: float | None
    ece: float | None
    brier: float | None
    n_train: int
    n_calibration: int

    def to_json(self) -> JsonObject:
        return {k: _round(getattr(self, k)) for k in self.__slots__}


@dataclass(frozen=True, slots=True)
class Fitted:
    model: ScoringModel
    metrics: Metrics
    estimator: Any
    """The fitted scikit-learn estimator (on the design matrix of ``design_row``), for checks; never stored."""
    indicators: tuple[int, ...] = ()
    """The features with a missing-indicator column in that matrix."""


def part_of(seed: str, profile_id: str) -> Part:
    """The split a profile falls in: a keyed hash, so stable across runs and unrelated to the id's order."""
    digest = hashlib.blake2b(f"{seed}\x1f{profile_id}".encode(), digest_size=8).digest()
    slot = int.from_bytes(digest, "big") % 100
    return "train" if slot < 60 else ("calibration" if slot < 80 else "test")


def design_row(values: Sequence[float | None], means: Sequence[float], scales: Sequence[float],
               indicators: Sequence[int]) -> list[float]:
    """A row of the fitted matrix: standardized values (missing → 0, the train mean), then a 1/0 missing
    indicator for each feature index in ``indicators``."""
    out = [0.0 if v is None else (v - means[i]) / scales[i] for i, v in enumerate(values)]
    out += [1.0 if values[i] is None else 0.0 for i in indicators]
    return out


def fit(data: Dataset, name: str, version: int, seed: str) -> Fitted:
    """Fit, calibrate and measure a model on ``data``; ``ValidationError`` (``insufficient_data``) when the
    train split is too small or holds one class only."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    parts = [part_of(seed, pid) for pid in data.ids]
    train = [i for i, p in enumerate(parts) if p == "train"]
    calib = [i for i, p in enumerate(parts) if p == "calibration"]
    test = [i for i, p in enumerate(parts) if p == "test"]
    labels = data.labels
    positives = sum(labels[i] for i in train)
    if len(train) < MIN_TRAIN or positives in (0, len(train)):
        raise ValidationError(
            f"model {name!r} cannot be trained: the train split has {len(train)} people, {positives} of them "
            f"positive; it needs at least {MIN_TRAIN} people and both outcomes",
            code="insufficient_data", details=[{"rows": len(data.ids), "train": len(train), "positives": positives}])
    k = len(data.features)
    means, scales, indicators = [], [], []
    for j in range(k):
        present = [data.rows[i][j] for i in train if data.rows[i][j] is not None]
        mean = math.fsum(present) / len(present) if present else 0.0  # type: ignore[arg-type]
        filled = [mean if data.rows[i][j] is None else data.rows[i][j] for i in train]
        var = math.fsum((v - mean) ** 2 for v in filled) / len(filled)  # type: ignore[operator]
        means.append(mean)
        scales.append(math.sqrt(var) if var > 0 else 1.0)
        if len(present) < len(train):
            indicators.append(j)
    x = np.array([design_row(data.rows[i], means, scales, indicators) for i in train], dtype=float)
    y = np.array([labels[i] for i in train], dtype=int)
    estimator = LogisticRegression(C=REGULARIZATION_C, max_iter=2000)
    estimator.fit(x, y)
    coef = [float(c) for c in estimator.coef_[0]]
    missing = [0.0] * k
    for slot, j in enumerate(indicators):
        missing[j] = coef[k + slot]
    raw = ScoringModel(name, version, data.features, tuple(means), tuple(scales), tuple(coef[:k]), tuple(missing),
                       float(estimator.intercept_[0]), Calibration("identity"))
    calibration = _calibrate([raw.log_odds(_row(data, i)) for i in calib], [labels[i] for i in calib])
    model = ScoringModel(name, version, data.features, raw.means, raw.scales, raw.coefficients,
                         raw.missing_coefficients, raw.intercept, calibration)
    scored = [model.score(_row(data, i)) for i in test]
    truth = [labels[i] for i in test]
    metrics = Metrics(
        n=len(test), positives=sum(truth), base_rate=sum(truth) / len(truth) if truth else None,
        auc=auc([s.probability for s in scored], truth), auc_raw=auc([s.log_odds for s in scored], truth),
        ece=ece([s.probability for s in scored], truth), brier=brier([s.probability for s in scored], truth),
        n_train=len(train), n_calibration=len(calib))
    return Fitted(model, metrics, estimator, tuple(indicators))


def _row(data: Dataset, i: int) -> dict[str, float | None]:
    return dict(zip(data.features, data.rows[i], strict=True))


def _calibrate(log_odds: Sequence[float], labels: Sequence[int]) -> Calibration:
    """A monotone map fitted on the calibration split (identity when it holds one class only)."""
    import numpy as np

    if len(set(labels)) < 2:
        return Calibration("identity")
    if len(labels) >= ISOTONIC_MIN:
        from sklearn.isotonic import IsotonicRegression

        raw = [1.0 / (1.0 + math.exp(-z)) for z in log_odds]
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, labels)
        return Calibration("isotonic", tuple(float(v) for v in iso.X_thresholds_),
                           tuple(float(v) for v in iso.y_thresholds_))
    from sklearn.linear_model import LogisticRegression

    platt = LogisticRegression(C=1e6, max_iter=2000).fit(np.array(log_odds, dtype=float).reshape(-1, 1),
                                                         np.array(labels, dtype=int))
    a, b = -float(platt.coef_[0][0]), -float(platt.intercept_[0])
    if a >= 0:  # a map that would reverse the ranking: keep the model's own probabilities
        return Calibration("identity")
    return Calibration("platt", a=a, b=b)


def auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Area under the ROC curve (ties count one half); None without both classes."""
    pos = sum(labels)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    rank_sum, i = 0.0, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mid = (i + j) / 2 + 1  # average 1-based rank of the tie group
        rank_sum += mid * sum(labels[order[t]] for t in range(i, j + 1))
        i = j + 1
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def ece(probabilities: Sequence[float], labels: Sequence[int], bins: int = ECE_BINS) -> float | None:
    """Expected calibration error over ``bins`` equal-width bins, weighted by their counts."""
    if not labels:
        return None
    total = 0.0
    for b in range(bins):
        members = [i for i, p in enumerate(probabilities)
                   if (b / bins <= p < (b + 1) / bins) or (b == bins - 1 and p == 1.0)]
        if members:
            gap = math.fsum(probabilities[i] for i in members) / len(members) - sum(labels[i] for i in members) / len(
                members)
            total += len(members) * abs(gap)
    return total / len(labels)


def brier(probabilities: Sequence[float], labels: Sequence[int]) -> float | None:
    if not labels:
        return None
    return math.fsum((p - y) ** 2 for p, y in zip(probabilities, labels, strict=True)) / len(labels)


def _round(value: object) -> object:
    return round(value, 6) if isinstance(value, float) else value
