"""Frequentist tests on sufficient statistics: two-proportion z, Welch t, χ² and the SRM check."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from scipy import stats as sps

from rapport.experiments.stats.moments import (
    NAN,
    SampleStats,
    TestResult,
    empty_result,
    relative_lift,
)

STANDARD_NORMAL = NormalDist()
SRM_ALPHA = 0.001


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def two_proportion_ztest(control: SampleStats, treatment: SampleStats, *,
                         alpha: float = 0.05) -> TestResult:
    """Two-sided z-test of conversion rates (``total`` = conversions).

    The p-value uses the pooled rate under H0 (as statsmodels' ``proportions_ztest``); the interval
    for the difference is the unpooled Wald interval, the lift interval the delta method.
    """
    _check_alpha(alpha)
    method = "two_proportion_z"
    if control.n < 1 or treatment.n < 1:
        return empty_result(method, "too_few_units")
    p_c, p_t = control.mean, treatment.mean
    pooled = (control.total + treatment.total) / (control.n + treatment.n)
    se0 = math.sqrt(pooled * (1.0 - pooled) * (1.0 / control.n + 1.0 / treatment.n))
    if se0 == 0.0:
        return empty_result(method, "zero_variance", p_c, p_t)
    diff = p_t - p_c
    z_stat = diff / se0
    p_value = 2.0 * STANDARD_NORMAL.cdf(-abs(z_stat))
    var_c, var_t = p_c * (1.0 - p_c) / control.n, p_t * (1.0 - p_t) / treatment.n
    z = STANDARD_NORMAL.inv_cdf(1.0 - alpha / 2.0)
    half = z * math.sqrt(var_c + var_t)
    lift, lift_low, lift_high = relative_lift(p_c, var_c, p_t, var_t, z)
    return TestResult(method, p_c, p_t, diff, diff - half, diff + half, lift, lift_low, lift_high,
                      p_value, z_stat, "ok" if p_c != 0 else "zero_baseline")


def welch_ttest(control: SampleStats, treatment: SampleStats, *, alpha: float = 0.05) -> TestResult:
    """Two-sided Welch t-test of means (unequal variances, Welch–Satterthwaite degrees of freedom).

    The difference interval uses the t quantile at those degrees of freedom; the lift interval
    the delta method with the normal quantile.
    """
    _check_alpha(alpha)
    return _welch("welch_t", control.n, control.mean, control.variance,
                  treatment.n, treatment.mean, treatment.variance, alpha)


def _welch(method: str, n_c: int, mean_c: float, var_c: float, n_t: int, mean_t: float,
           var_t: float, alpha: float) -> TestResult:
    if n_c < 2 or n_t < 2:
        return empty_result(method, "too_few_units", mean_c, mean_t)
    vm_c, vm_t = var_c / n_c, var_t / n_t
    se2 = vm_c + vm_t
    if se2 <= 0.0:
        return empty_result(method, "zero_variance", mean_c, mean_t)
    se = math.sqrt(se2)
    df = se2**2 / (vm_c**2 / (n_c - 1) + vm_t**2 / (n_t - 1))
    diff = mean_t - mean_c
    t_stat = diff / se
    p_value = float(2.0 * sps.t.sf(abs(t_stat), df))
    half = float(sps.t.ppf(1.0 - alpha / 2.0, df)) * se
    z = STANDARD_NORMAL.inv_cdf(1.0 - alpha / 2.0)
    lift, lift_low, lift_high = relative_lift(mean_c, vm_c, mean_t, vm_t, z)
    return TestResult(method, mean_c, mean_t, diff, diff - half, diff + half, lift, lift_low,
                      lift_high, p_value, t_stat, "ok" if mean_c != 0 else "zero_baseline")


@dataclass(frozen=True, slots=True)
class ChiSquareResult:
    """A χ² statistic with its degrees of freedom and p-value; ``ok`` is False when undefined."""

    method: str
    statistic: float
    dof: int
    p_value: float
    ok: bool = True


def conversion_chi_square(variants: Sequence[SampleStats]) -> ChiSquareResult:
    """Pearson χ² test of independence on the k × 2 table (conversions, non-conversions).

    No continuity correction (scipy's ``chi2_contingency(..., correction=False)``); use it for
    more than two variants, the z-test for two.
    """
    method = "chi_square_conversion"
    if len(variants) < 2 or any(v.n < 1 for v in variants):
        return ChiSquareResult(method, NAN, max(len(variants) - 1, 0), NAN, ok=False)
    total_n = sum(v.n for v in variants)
    total_conv = sum(v.total for v in variants)
    rate = total_conv / total_n
    if rate in (0.0, 1.0):
        return ChiSquareResult(method, NAN, len(variants) - 1, NAN, ok=False)
    stat = 0.0
    for v in variants:
        for observed, expected in ((v.total, v.n * rate), (v.n - v.total, v.n * (1.0 - rate))):
            stat += (observed - expected) ** 2 / expected
    dof = len(variants) - 1
    return ChiSquareResult(method, stat, dof, float(sps.chi2.sf(stat, dof)))


@dataclass(frozen=True, slots=True)
class SrmResult:
    """Sample-ratio-mismatch check: ``mismatch`` is True when ``p_value < alpha``."""

    statistic: float
    dof: int
    p_value: float
    alpha: float
    mismatch: bool
    ok: bool = True


def srm_check(counts: Sequence[int], weights: Sequence[float], *,
              alpha: float = SRM_ALPHA) -> SrmResult:
    """χ² goodness of fit of observed unit counts per variant against the configured weights.

    Weights need not sum to 1. With no units at all the result is ``ok=False`` and no mismatch.
    """
    _check_alpha(alpha)
    if len(counts) != len(weights) or len(counts) < 2:
        raise ValueError(f"need one weight per variant and at least two variants, got "
                         f"{len(counts)} counts and {len(weights)} weights")
    if any(w <= 0 for w in weights) or any(c < 0 for c in counts):
        raise ValueError(f"weights must be > 0 and counts >= 0, got {list(weights)} and {list(counts)}")
    dof = len(counts) - 1
    total = sum(counts)
    if total == 0:
        return SrmResult(NAN, dof, NAN, alpha, mismatch=False, ok=False)
    weight_sum = sum(weights)
    stat = 0.0
    for count, weight in zip(counts, weights, strict=True):
        expected = total * weight / weight_sum
        stat += (count - expected) ** 2 / expected
    p_value = float(sps.chi2.sf(stat, dof))
    return SrmResult(stat, dof, p_value, alpha, mismatch=p_value < alpha)
