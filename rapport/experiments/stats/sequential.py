"""Always-valid inference: a normal-mixture confidence sequence for a difference of means (mSPRT).

With d̂ the difference of means and V its variance (σ²_c/n_c + σ²_t/n_t), mixing the Gaussian
likelihood ratio over effects θ ~ N(0, τ²) gives the martingale

    Λ = √(V / (V + τ²)) · exp(τ²·d̂² / (2V(V + τ²))).

By Ville's inequality P(Λ ever ≥ 1/α | no effect) ≤ α, so the always-valid p-value
min(1, 1/Λ) may be read after every unit, and inverting it gives the confidence sequence

    d̂ ± √(V(V + τ²)/τ² · log((V + τ²) / (V·α²)))

that covers the true difference at all looks simultaneously with probability ≥ 1 − α (the
two-sided normal-mixture boundary of Howard et al., 2021). Validity is exact for Gaussian data
with known variances and asymptotic with the sample variances plugged in, as here.

The tuning parameter is ``mixing_variance`` τ², in squared metric units: τ is the effect scale
the test is most sensitive to, so choose it near the smallest effect worth detecting (for
conversion, e.g. τ = 0.1 × the baseline rate). Any τ² > 0 keeps the guarantee; a
poor choice only costs power. Callers that look repeatedly may keep the running minimum of the
p-value and the running intersection of the intervals; both stay valid.
"""

from __future__ import annotations

import math

from rapport.experiments.stats.moments import SampleStats, TestResult, empty_result

METHOD = "msprt_normal_mixture"


def _half_width(variance: float, tau_sq: float, alpha: float) -> float:
    if variance <= 0:
        return 0.0  # a degenerate estimate (e.g. a lift whose treatment never moved) has no spread to cover
    return math.sqrt(variance * (variance + tau_sq) / tau_sq
                     * math.log((variance + tau_sq) / (variance * alpha**2)))


def sequential_test(control: SampleStats, treatment: SampleStats, *, mixing_variance: float,
                    alpha: float = 0.05) -> TestResult:
    """Always-valid p-value and confidence sequence for treatment − control at the current look.

    ``statistic`` is log Λ. The lift interval applies the same boundary to the delta-method
    variance of the relative lift with τ² scaled by the squared control mean (asymptotic).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not mixing_variance > 0:
        raise ValueError(f"mixing_variance must be > 0, got {mixing_variance}")
    mean_c, mean_t = control.mean, treatment.mean
    if control.n < 2 or treatment.n < 2:
        return empty_result(METHOD, "too_few_units", mean_c, mean_t)
    vm_c, vm_t = control.variance / control.n, treatment.variance / treatment.n
    variance = vm_c + vm_t
    if variance <= 0:
        return empty_result(METHOD, "zero_variance", mean_c, mean_t)
    diff = mean_t - mean_c
    tau_sq = mixing_variance
    log_lr = (0.5 * math.log(variance / (variance + tau_sq))
              + tau_sq * diff**2 / (2.0 * variance * (variance + tau_sq)))
    p_value = math.exp(-log_lr) if log_lr > 0 else 1.0
    half = _half_width(variance, tau_sq, alpha)
    if mean_c == 0:
        lift = lift_low = lift_high = float("nan")
    else:
        lift = mean_t / mean_c - 1.0
        lift_var = vm_t / mean_c**2 + mean_t**2 * vm_c / mean_c**4
        lift_half = _half_width(lift_var, tau_sq / mean_c**2, alpha)
        lift_low, lift_high = lift - lift_half, lift + lift_half
    return TestResult(METHOD, mean_c, mean_t, diff, diff - half, diff + half, lift, lift_low,
                      lift_high, p_value, log_lr, "ok" if mean_c != 0 else "zero_baseline")
