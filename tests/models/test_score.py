"""Pure scoring from stored numbers: round trip, missing values, calibration maps, reasons."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from rapport.models.score import Calibration, ScoringModel
from rapport.models.train import auc, ece

MODEL = ScoringModel(
    name="m", version=3, features=("orders", "rate", "days"), means=(2.0, 0.5, 30.0), scales=(1.5, 0.2, 10.0),
    coefficients=(0.8, -0.4, 0.1), missing_coefficients=(0.0, 0.3, -0.2), intercept=-1.0,
    calibration=Calibration("isotonic", (0.1, 0.3, 0.6, 0.9), (0.05, 0.2, 0.5, 0.95)))


def test_the_stored_document_is_numbers_and_round_trips() -> None:
    doc = orjson.loads(orjson.dumps(MODEL.to_json()))
    again = ScoringModel.from_json("m", 3, doc)
    assert again == MODEL
    values = {"orders": 4, "rate": None, "days": 12.5}
    assert again.score(values) == MODEL.score(values)


def test_missing_values_take_the_train_mean_and_the_indicator() -> None:
    scored = MODEL.score({"orders": 2.0})
    by_feature = {r.feature: r for r in scored.reasons}
    assert by_feature["orders"].contribution == 0.0
    assert by_feature["rate"].value is None and by_feature["rate"].contribution == 0.3
    assert by_feature["days"].contribution == -0.2
    assert scored.log_odds == pytest.approx(-1.0 + 0.3 - 0.2)
    # Text, NaN and infinities are missing too; booleans count as 0/1.
    assert MODEL.score({"orders": "many", "rate": math.nan, "days": math.inf}).log_odds == pytest.approx(-0.9)
    assert MODEL.score({"orders": True}).reasons == MODEL.score({"orders": 1.0}).reasons


def test_reasons_decompose_the_log_odds_largest_first() -> None:
    scored = MODEL.score({"orders": 7, "rate": 0.9, "days": 45})
    assert [r.feature for r in scored.reasons] == ["orders", "rate", "days"]
    assert MODEL.intercept + math.fsum(r.contribution for r in scored.reasons) == pytest.approx(scored.log_odds)
    assert scored.raw_probability == pytest.approx(1 / (1 + math.exp(-scored.log_odds)))
    assert MODEL.probability({"orders": 7, "rate": 0.9, "days": 45}) == scored.probability


def test_isotonic_interpolates_like_numpy_and_clips() -> None:
    cal = MODEL.calibration
    for p in np.linspace(0, 1, 41):
        assert cal.apply(float(p), 0.0) == pytest.approx(float(np.interp(p, cal.xs, cal.ys)))


def test_platt_is_monotone_when_a_is_negative() -> None:
    cal = Calibration("platt", a=-1.2, b=0.3)
    mapped = [cal.apply(0.0, z / 4) for z in range(-40, 41)]
    assert mapped == sorted(mapped) and mapped[0] < 0.01 and mapped[-1] > 0.99
    assert Calibration.from_json(cal.to_json()) == cal


def test_metrics() -> None:
    assert auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auc([0.5, 0.5], [0, 1]) == 0.5
    assert auc([0.3], [1]) is None
    assert ece([0.1, 0.9], [0, 1]) == pytest.approx(0.1)
    assert ece([0.5] * 4, [0, 1, 0, 1]) == 0.0
