"""Bayesian comparisons: beta-binomial for conversions and normal-normal for means.

Both report the probability that treatment beats control and the expected loss of each choice
(the expected shortfall, in metric units, if that choice turns out worse). Beta-binomial values
come from one-dimensional numerical integration (adaptive quadrature, absolute error below 1e-8),
so results are deterministic; normal-normal values are closed forms.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

from scipy import integrate
from scipy import stats as sps

from rapport.experiments.stats.moments import NAN, SampleStats, relative_lift

_TAIL = 1e-12


@dataclass(frozen=True, slots=True)
class BayesResult:
    """Posterior comparison of treatment with control.

    ``estimate`` is the posterior mean of (treatment − control) with a central credible interval
    from the normal approximation of the posterior difference; ``lift`` is the relative difference
    of posterior means with a delta-method interval. ``expected_loss`` is E[max(control −
    treatment, 0)] (the risk of shipping treatment), ``expected_loss_control`` the reverse.
    ``ok`` is False (all fields NaN) when a variant has no units or no variance.
    """

    method: str
    control_mean: float
    treatment_mean: float
    estimate: float
    ci_low: float
    ci_high: float
    lift: float
    lift_ci_low: float
    lift_ci_high: float
    chance_to_beat_control: float
    expected_loss: float
    expected_loss_control: float
    ok: bool = True


def _empty(method: str) -> BayesResult:
    return BayesResult(method, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, ok=False)


def _summary(method: str, mean_c: float, var_c: float, mean_t: float, var_t: float,
             chance: float, loss_t: float, loss_c: float, level: float) -> BayesResult:
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    diff = mean_t - mean_c
    half = z * math.sqrt(var_c + var_t)
    lift, lift_low, lift_high = relative_lift(mean_c, var_c, mean_t, var_t, z)
    return BayesResult(method, mean_c, mean_t, diff, diff - half, diff + half, lift, lift_low,
                       lift_high, chance, loss_t, loss_c)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"credible level must be in (0, 1), got {level}")


def _upper_partial_mean(a: float, b: float, x: float) -> float:
    """E[(P − x)⁺] for P ~ Beta(a, b): μ·S_{a+1,b}(x) − x·S_{a,b}(x), S the survival function."""
    return float(a / (a + b) * sps.beta.sf(x, a + 1.0, b) - x * sps.beta.sf(x, a, b))


def _beta_compare(a_c: float, b_c: float, a_t: float, b_t: float) -> tuple[float, float, float]:
    """P(T > C), E[(C − T)⁺] and E[(T − C)⁺] for independent Beta posteriors."""
    lo = min(sps.beta.ppf(_TAIL, a_c, b_c), sps.beta.ppf(_TAIL, a_t, b_t))
    hi = max(sps.beta.isf(_TAIL, a_c, b_c), sps.beta.isf(_TAIL, a_t, b_t))
    points = [float(sps.beta.mean(a_c, b_c)), float(sps.beta.mean(a_t, b_t))]

    def quad(f: Callable[[float], float]) -> float:
        value, _ = integrate.quad(f, lo, hi, points=points, epsabs=1e-10, epsrel=1e-10, limit=400)
        return float(value)

    chance = quad(lambda x: sps.beta.pdf(x, a_c, b_c) * sps.beta.sf(x, a_t, b_t))
    loss_t = quad(lambda x: sps.beta.pdf(x, a_t, b_t) * _upper_partial_mean(a_c, b_c, x))
    loss_c = quad(lambda x: sps.beta.pdf(x, a_c, b_c) * _upper_partial_mean(a_t, b_t, x))
    return min(max(chance, 0.0), 1.0), max(loss_t, 0.0), max(loss_c, 0.0)


def beta_binomial(control: SampleStats, treatment: SampleStats, *, prior_alpha: float = 1.0,
                  prior_beta: float = 1.0, level: float = 0.95) -> BayesResult:
    """Conversion rates (``total`` = conversions) with a Beta(prior_alpha, prior_beta) prior."""
    _check_level(level)
    if prior_alpha <= 0 or prior_beta <= 0:
        raise ValueError(f"beta prior parameters must be > 0, got {prior_alpha} and {prior_beta}")
    method = "beta_binomial"
    if control.n < 1 or treatment.n < 1:
        return _empty(method)
    a_c, b_c = prior_alpha + control.total, prior_beta + control.n - control.total
    a_t, b_t = prior_alpha + treatment.total, prior_beta + treatment.n - treatment.total
    chance, loss_t, loss_c = _beta_compare(a_c, b_c, a_t, b_t)
    return _summary(method, float(sps.beta.mean(a_c, b_c)), float(sps.beta.var(a_c, b_c)),
                    float(sps.beta.mean(a_t, b_t)), float(sps.beta.var(a_t, b_t)),
                    chance, loss_t, loss_c, level)


def normal_means(control: SampleStats, treatment: SampleStats, *, prior_mean: float = 0.0,
                 prior_variance: float = math.inf, level: float = 0.95) -> BayesResult:
    """Means with a N(prior_mean, prior_variance) prior on each and the sample variance as known.

    The default infinite prior variance is the flat prior: posteriors N(x̄, s²/n). With D the
    posterior difference N(d, v): P(D > 0) = Φ(d/√v) and E[(−D)⁺] = √v·φ(d/√v) − d·Φ(−d/√v).
    """
    _check_level(level)
    if not prior_variance > 0:
        raise ValueError(f"prior_variance must be > 0, got {prior_variance}")
    method = "normal_normal"
    if control.n < 2 or treatment.n < 2:
        return _empty(method)

    def posterior(s: SampleStats) -> tuple[float, float]:
        precision = s.n / s.variance + 1.0 / prior_variance
        return (s.n * s.mean / s.variance + prior_mean / prior_variance) / precision, 1.0 / precision

    if control.variance <= 0 or treatment.variance <= 0:
        return _empty(method)
    (m_c, v_c), (m_t, v_t) = posterior(control), posterior(treatment)
    d, sd = m_t - m_c, math.sqrt(v_c + v_t)
    normal = NormalDist()
    chance = normal.cdf(d / sd)
    loss_t = sd * normal.pdf(d / sd) - d * normal.cdf(-d / sd)
    loss_c = sd * normal.pdf(d / sd) + d * normal.cdf(d / sd)
    return _summary(method, m_c, v_c, m_t, v_t, chance, max(loss_t, 0.0), max(loss_c, 0.0), level)
