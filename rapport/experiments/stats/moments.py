"""Sufficient statistics per variant and the result values every test returns.

SQL returns sums, never rows: ``n``, ``Σx`` and ``Σx²`` per variant (plus the cross sums a
covariate or a ratio metric needs). Everything in this package is pure arithmetic on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "too_few_units", "zero_variance", "zero_baseline"]
"""Why a result is (partly) empty: degenerate inputs return NaN fields with a code, never raise.

``zero_baseline`` keeps the absolute difference and p-value; only the relative lift is NaN.
"""

NAN = float("nan")


@dataclass(frozen=True, slots=True)
class SampleStats:
    """``n`` units with ``total`` = Σx and ``total_sq`` = Σx² (a 0/1 metric has Σx² = Σx)."""

    n: int
    total: float
    total_sq: float

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n > 0 else NAN

    @property
    def variance(self) -> float:
        """Unbiased sample variance (``n - 1`` denominator), clipped at 0 against rounding."""
        if self.n < 2:
            return NAN
        return max(self.total_sq - self.total * self.total / self.n, 0.0) / (self.n - 1)

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")


@dataclass(frozen=True, slots=True)
class CovariateStats:
    """A metric ``x`` with a pre-period covariate ``y`` for the same ``n`` units (CUPED)."""

    n: int
    sum_x: float
    sum_x_sq: float
    sum_y: float
    sum_y_sq: float
    sum_xy: float

    @property
    def metric(self) -> SampleStats:
        return SampleStats(self.n, self.sum_x, self.sum_x_sq)

    @property
    def covariate(self) -> SampleStats:
        return SampleStats(self.n, self.sum_y, self.sum_y_sq)

    @property
    def covariance(self) -> float:
        if self.n < 2:
            return NAN
        return (self.sum_xy - self.sum_x * self.sum_y / self.n) / (self.n - 1)


@dataclass(frozen=True, slots=True)
class RatioStats:
    """A ratio metric over ``n`` units: numerator and denominator sums with their cross moments.

    Revenue per session, for example, has one unit per person, numerator = the person's revenue
    and denominator = the person's sessions.
    """

    n: int
    sum_num: float
    sum_den: float
    sum_num_sq: float
    sum_den_sq: float
    sum_num_den: float


@dataclass(frozen=True, slots=True)
class TestResult:
    """Treatment compared with control.

    ``estimate`` is the absolute difference (treatment − control) with its interval
    ``[ci_low, ci_high]``; ``lift`` is the relative difference (treatment / control − 1) with
    ``[lift_ci_low, lift_ci_high]`` from the delta method.
    """

    __test__ = False  # not a pytest class

    method: str
    control_mean: float
    treatment_mean: float
    estimate: float
    ci_low: float
    ci_high: float
    lift: float
    lift_ci_low: float
    lift_ci_high: float
    p_value: float
    statistic: float
    status: Status = "ok"


def empty_result(method: str, status: Status, control_mean: float = NAN,
                 treatment_mean: float = NAN) -> TestResult:
    """The coded result for inputs on which the test is undefined."""
    return TestResult(method, control_mean, treatment_mean, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN,
                      status)


def relative_lift(mean_c: float, var_mean_c: float, mean_t: float, var_mean_t: float,
                  z: float) -> tuple[float, float, float]:
    """Relative lift ``mean_t / mean_c − 1`` and its normal interval by the delta method.

    ``var_mean_*`` are the variances of the two means (independent samples):
    Var(t/c) ≈ Var(t)/c² + t²·Var(c)/c⁴. NaN when the control mean is 0.
    """
    if mean_c == 0 or not math.isfinite(mean_c):
        return NAN, NAN, NAN
    lift = mean_t / mean_c - 1.0
    se = math.sqrt(var_mean_t / mean_c**2 + mean_t**2 * var_mean_c / mean_c**4)
    return lift, lift - z * se, lift + z * se
