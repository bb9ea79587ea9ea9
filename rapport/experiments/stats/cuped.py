"""CUPED: variance reduction with a pre-period covariate, and the delta method for ratio metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from rapport.experiments.stats.frequentist import _check_alpha, _welch
from rapport.experiments.stats.moments import (
    NAN,
    CovariateStats,
    RatioStats,
    TestResult,
    empty_result,
    relative_lift,
)


@dataclass(frozen=True, slots=True)
class AdjustedMoments:
    """One variant after CUPED: mean and unit variance of ``x − θ·(y − ȳ)``, and the raw variance."""

    n: int
    mean: float
    variance: float
    raw_variance: float


@dataclass(frozen=True, slots=True)
class CupedAdjustment:
    """θ and both adjusted variants; ``variance_reduction`` is 1 − Σ adjusted / Σ raw variances."""

    theta: float
    control: AdjustedMoments
    treatment: AdjustedMoments
    variance_reduction: float


def cuped_adjust(control: CovariateStats, treatment: CovariateStats) -> CupedAdjustment:
    """θ = pooled within-variant Cov(x, y) / Var(y); means are centred on the pooled covariate mean.

    Pooling within variants keeps the treatment effect out of θ. Each variant's adjusted variance is
    Var(x) + θ²·Var(y) − 2θ·Cov(x, y), the exact sample variance of the adjusted values; θ is the
    pooled least-squares slope, so the pooled adjusted variance never exceeds the pooled raw one.
    θ is 0 (no adjustment) when the covariate has no variance.
    """
    parts = (control, treatment)
    dof = sum(p.n - 1 for p in parts)
    if dof <= 0 or control.n < 2 or treatment.n < 2:
        theta = 0.0
    else:
        s_xy = sum(p.sum_xy - p.sum_x * p.sum_y / p.n for p in parts)
        s_yy = sum(p.sum_y_sq - p.sum_y * p.sum_y / p.n for p in parts)
        theta = s_xy / s_yy if s_yy > 0 else 0.0
    n_all = control.n + treatment.n
    y_bar = (control.sum_y + treatment.sum_y) / n_all if n_all else NAN

    def adjust(p: CovariateStats) -> AdjustedMoments:
        raw = p.metric.variance
        if p.n < 2:
            return AdjustedMoments(p.n, p.metric.mean, NAN, raw)
        var = raw + theta**2 * p.covariate.variance - 2.0 * theta * p.covariance
        mean = p.metric.mean - theta * (p.covariate.mean - y_bar)
        return AdjustedMoments(p.n, mean, max(var, 0.0), raw)

    adj_c, adj_t = adjust(control), adjust(treatment)
    raw_sum = adj_c.raw_variance + adj_t.raw_variance
    reduction = 1.0 - (adj_c.variance + adj_t.variance) / raw_sum if raw_sum > 0 else NAN
    return CupedAdjustment(theta, adj_c, adj_t, reduction)


def cuped_welch_ttest(control: CovariateStats, treatment: CovariateStats, *,
                      alpha: float = 0.05) -> TestResult:
    """Welch t-test on CUPED-adjusted means and variances (``method='cuped_welch_t'``).

    The relative lift is taken against the adjusted control mean.
    """
    _check_alpha(alpha)
    adj = cuped_adjust(control, treatment)
    c, t = adj.control, adj.treatment
    return _welch("cuped_welch_t", c.n, c.mean, c.variance, t.n, t.mean, t.variance, alpha)


def _ratio_moments(s: RatioStats) -> tuple[float, float] | None:
    """Ratio Σnum/Σden and the delta-method variance of that ratio, or None when undefined."""
    if s.n < 2 or s.sum_den == 0:
        return None
    n = s.n
    mu_num, mu_den = s.sum_num / n, s.sum_den / n
    var_num = (s.sum_num_sq - s.sum_num**2 / n) / (n - 1)
    var_den = (s.sum_den_sq - s.sum_den**2 / n) / (n - 1)
    cov = (s.sum_num_den - s.sum_num * s.sum_den / n) / (n - 1)
    ratio = mu_num / mu_den
    var = (var_num - 2.0 * ratio * cov + ratio**2 * var_den) / (mu_den**2 * n)
    return ratio, max(var, 0.0)


def ratio_ztest(control: RatioStats, treatment: RatioStats, *, alpha: float = 0.05) -> TestResult:
    """z-test of a ratio metric (Σnum / Σden per variant) with delta-method variances.

    Var(R̂) ≈ (Var(num) − 2R·Cov(num, den) + R²·Var(den)) / (n·μ_den²), units independent.
    """
    _check_alpha(alpha)
    method = "ratio_delta_z"
    mc, mt = _ratio_moments(control), _ratio_moments(treatment)
    if mc is None or mt is None:
        return empty_result(method, "too_few_units")
    (r_c, v_c), (r_t, v_t) = mc, mt
    se = math.sqrt(v_c + v_t)
    if se == 0.0:
        return empty_result(method, "zero_variance", r_c, r_t)
    diff = r_t - r_c
    z_stat = diff / se
    normal = NormalDist()
    z = normal.inv_cdf(1.0 - alpha / 2.0)
    lift, low, high = relative_lift(r_c, v_c, r_t, v_t, z)
    return TestResult(method, r_c, r_t, diff, diff - z * se, diff + z * se, lift, low, high,
                      2.0 * normal.cdf(-abs(z_stat)), z_stat, "ok" if r_c != 0 else "zero_baseline")
