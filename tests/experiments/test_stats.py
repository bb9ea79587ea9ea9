"""Statistics engine: golden values against scipy/statsmodels from raw samples, properties, A/A simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import stats as sps
from scipy.special import betaln
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from rapport.experiments.stats import (
    CovariateStats,
    RatioStats,
    SampleStats,
    benjamini_hochberg,
    beta_binomial,
    conversion_chi_square,
    cuped_adjust,
    cuped_welch_ttest,
    holm,
    normal_means,
    ratio_ztest,
    sequential_test,
    srm_check,
    two_proportion_ztest,
    welch_ttest,
)

GOLD = 1e-5


def moments(x: NDArray[np.float64]) -> SampleStats:
    """What SQL would return for a variant: n, Σx, Σx²."""
    return SampleStats(len(x), float(x.sum()), float((x * x).sum()))


# -- frequentist golden values ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_welch_matches_scipy_from_raw_samples(seed: int) -> None:
    rng = np.random.default_rng(seed)
    control = rng.lognormal(3.0, 1.0, 800)
    treatment = rng.lognormal(3.05, 1.2, 650)
    result = welch_ttest(moments(control), moments(treatment), alpha=0.05)
    expected = sps.ttest_ind(treatment, control, equal_var=False)
    ci = expected.confidence_interval(0.95)
    assert result.method == "welch_t" and result.status == "ok"
    assert result.statistic == pytest.approx(expected.statistic, abs=GOLD)
    assert result.p_value == pytest.approx(expected.pvalue, abs=GOLD)
    assert result.estimate == pytest.approx(treatment.mean() - control.mean(), abs=GOLD)
    assert (result.ci_low, result.ci_high) == pytest.approx((ci.low, ci.high), abs=GOLD)
    assert result.lift == pytest.approx(treatment.mean() / control.mean() - 1, abs=GOLD)
    assert result.lift_ci_low < result.lift < result.lift_ci_high


@pytest.mark.parametrize(("rate_c", "rate_t"), [(0.10, 0.11), (0.02, 0.025), (0.5, 0.48)])
def test_two_proportion_z_matches_statsmodels(rate_c: float, rate_t: float) -> None:
    rng = np.random.default_rng(7)
    control = (rng.random(5_000) < rate_c).astype(float)
    treatment = (rng.random(5_300) < rate_t).astype(float)
    result = two_proportion_ztest(moments(control), moments(treatment))
    counts = np.array([treatment.sum(), control.sum()])
    nobs = np.array([len(treatment), len(control)])
    z, p = proportions_ztest(counts, nobs)
    low, high = confint_proportions_2indep(counts[0], nobs[0], counts[1], nobs[1],
                                           method="wald", compare="diff", alpha=0.05)
    assert result.statistic == pytest.approx(z, abs=GOLD)
    assert result.p_value == pytest.approx(p, abs=GOLD)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), abs=GOLD)
    assert result.lift == pytest.approx(treatment.mean() / control.mean() - 1, abs=GOLD)


def test_lift_interval_is_the_delta_method() -> None:
    control, treatment = SampleStats(1000, 100, 100), SampleStats(1000, 120, 120)
    result = two_proportion_ztest(control, treatment)
    var_c, var_t = 0.1 * 0.9 / 1000, 0.12 * 0.88 / 1000
    se = math.sqrt(var_t / 0.1**2 + 0.12**2 * var_c / 0.1**4)
    assert result.lift == pytest.approx(0.2)
    assert (result.lift_ci_low, result.lift_ci_high) == pytest.approx((0.2 - 1.959964 * se,
                                                                        0.2 + 1.959964 * se), abs=GOLD)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_conversion_chi_square_matches_scipy(k: int) -> None:
    rng = np.random.default_rng(k)
    samples = [(rng.random(2_000 + 100 * i) < 0.1 + 0.005 * i).astype(float) for i in range(k)]
    result = conversion_chi_square([moments(s) for s in samples])
    table = np.array([[s.sum(), len(s) - s.sum()] for s in samples])
    stat, p, dof, _ = sps.chi2_contingency(table, correction=False)
    assert result.ok and result.dof == dof == k - 1
    assert result.statistic == pytest.approx(stat, abs=GOLD)
    assert result.p_value == pytest.approx(p, abs=GOLD)


@pytest.mark.parametrize(("counts", "weights"), [
    ([5_030, 4_970], [1, 1]), ([5_200, 4_800], [0.5, 0.5]), ([2_010, 3_050, 4_940], [20, 30, 50]),
])
def test_srm_matches_scipy_chisquare(counts: list[int], weights: list[float]) -> None:
    total, weight_sum = sum(counts), sum(weights)
    expected = sps.chisquare(counts, [total * w / weight_sum for w in weights])
    result = srm_check(counts, weights)
    assert result.statistic == pytest.approx(expected.statistic, abs=GOLD)
    assert result.p_value == pytest.approx(expected.pvalue, abs=GOLD)
    assert result.alpha == 0.001
    assert result.mismatch == bool(expected.pvalue < 0.001)


def test_srm_flags_a_broken_split_and_survives_empty_variants() -> None:
    assert srm_check([5_200, 4_800], [1, 1]).mismatch
    assert not srm_check([5_030, 4_970], [1, 1]).mismatch
    empty = srm_check([0, 0], [1, 1])
    assert not empty.ok and not empty.mismatch
    assert srm_check([0, 100], [1, 1]).mismatch
    with pytest.raises(ValueError, match="one weight per variant"):
        srm_check([1, 2, 3], [1, 1])


@pytest.mark.parametrize("seed", [11, 12])
def test_corrections_match_statsmodels(seed: int) -> None:
    p_values = list(np.random.default_rng(seed).random(12) ** 3)
    for ours, method in ((holm, "holm"), (benjamini_hochberg, "fdr_bh")):
        expected = multipletests(p_values, method=method)[1]
        assert ours(p_values) == pytest.approx(list(expected), abs=GOLD)


def test_degenerate_inputs_return_coded_results() -> None:
    one = SampleStats(1, 3.0, 9.0)
    flat = SampleStats(10, 30.0, 90.0)
    assert welch_ttest(one, flat).status == "too_few_units"
    assert math.isnan(welch_ttest(flat, flat).p_value)
    assert welch_ttest(flat, flat).status == "zero_variance"
    zero = SampleStats(100, 0.0, 0.0)
    result = two_proportion_ztest(zero, SampleStats(100, 5.0, 5.0))
    assert result.status == "zero_baseline" and math.isnan(result.lift) and result.p_value < 0.05
    assert two_proportion_ztest(zero, zero).status == "zero_variance"
    assert not conversion_chi_square([zero, zero, zero]).ok


# -- properties ---------------------------------------------------------------------------------

p_lists = st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=30)


@given(p_lists)
def test_adjusted_p_values_are_monotone_and_not_below_raw(p_values: list[float]) -> None:
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    for adjust in (holm, benjamini_hochberg):
        adjusted = adjust(p_values)
        assert all(a >= p and a <= 1.0 for a, p in zip(adjusted, p_values, strict=True))
        ranked = [adjusted[i] for i in order]
        assert ranked == sorted(ranked)


@given(p_lists)
def test_bh_never_exceeds_holm(p_values: list[float]) -> None:
    for bh, hm in zip(benjamini_hochberg(p_values), holm(p_values), strict=True):
        assert bh <= hm + 1e-12


# -- A/A simulation -----------------------------------------------------------------------------

EXPERIMENTS = 4_000


def test_aa_false_positive_rate_of_welch_and_z_is_alpha() -> None:
    rng = np.random.default_rng(2024)
    n = 400
    values = rng.exponential(10.0, size=(EXPERIMENTS, 2, n))
    sums, sums_sq = values.sum(axis=2), (values * values).sum(axis=2)
    conv = rng.random((EXPERIMENTS, 2, n)) < 0.2
    conv_sums = conv.sum(axis=2)
    welch_hits = z_hits = 0
    for e in range(EXPERIMENTS):
        c, t = (SampleStats(n, float(sums[e, i]), float(sums_sq[e, i])) for i in (0, 1))
        welch_hits += welch_ttest(c, t).p_value < 0.05
        cc, ct = (SampleStats(n, float(conv_sums[e, i]), float(conv_sums[e, i])) for i in (0, 1))
        z_hits += two_proportion_ztest(cc, ct).p_value < 0.05
    assert 0.04 <= welch_hits / EXPERIMENTS <= 0.06
    assert 0.04 <= z_hits / EXPERIMENTS <= 0.06



def test_welch_and_lift_intervals_cover_the_true_effect() -> None:
    rng = np.random.default_rng(77)
    runs, n = 2_000, 500
    values = rng.exponential(10.0, size=(runs, 2, n))
    values[:, 1, :] *= 1.05  # true lift 5 %, true difference 0.5
    sums, sums_sq = values.sum(axis=2), (values * values).sum(axis=2)
    diff_hits = lift_hits = 0
    for e in range(runs):
        c, t = (SampleStats(n, float(sums[e, i]), float(sums_sq[e, i])) for i in (0, 1))
        r = welch_ttest(c, t)
        diff_hits += r.ci_low <= 0.5 <= r.ci_high
        lift_hits += r.lift_ci_low <= 0.05 <= r.lift_ci_high
    assert 0.935 <= diff_hits / runs <= 0.965
    assert 0.935 <= lift_hits / runs <= 0.965

# -- CUPED and ratio metrics --------------------------------------------------------------------


def covariate_moments(x: NDArray[np.float64], y: NDArray[np.float64]) -> CovariateStats:
    return CovariateStats(len(x), float(x.sum()), float((x * x).sum()), float(y.sum()),
                          float((y * y).sum()), float((x * y).sum()))


def correlated(rng: np.random.Generator, n: int, effect: float) -> tuple[NDArray[np.float64], ...]:
    pre = rng.gamma(2.0, 5.0, n)
    post = 0.8 * pre + rng.normal(effect, 3.0, n)
    return post, pre


def test_cuped_matches_welch_on_adjusted_raw_values() -> None:
    rng = np.random.default_rng(5)
    (xc, yc), (xt, yt) = correlated(rng, 900, 0.0), correlated(rng, 1_000, 0.4)
    theta = (np.sum((xc - xc.mean()) * (yc - yc.mean())) + np.sum((xt - xt.mean()) * (yt - yt.mean()))) / (
        np.sum((yc - yc.mean()) ** 2) + np.sum((yt - yt.mean()) ** 2))
    y_bar = np.concatenate([yc, yt]).mean()
    adj_c, adj_t = xc - theta * (yc - y_bar), xt - theta * (yt - y_bar)
    expected = sps.ttest_ind(adj_t, adj_c, equal_var=False)
    ci = expected.confidence_interval(0.95)
    adjustment = cuped_adjust(covariate_moments(xc, yc), covariate_moments(xt, yt))
    result = cuped_welch_ttest(covariate_moments(xc, yc), covariate_moments(xt, yt))
    assert adjustment.theta == pytest.approx(theta, abs=GOLD)
    assert adjustment.control.variance == pytest.approx(adj_c.var(ddof=1), abs=GOLD)
    assert adjustment.treatment.mean == pytest.approx(adj_t.mean(), abs=GOLD)
    assert result.method == "cuped_welch_t"
    assert result.statistic == pytest.approx(expected.statistic, abs=GOLD)
    assert result.p_value == pytest.approx(expected.pvalue, abs=GOLD)
    assert (result.ci_low, result.ci_high) == pytest.approx((ci.low, ci.high), abs=GOLD)
    plain = welch_ttest(moments(xc), moments(xt))
    assert adjustment.variance_reduction > 0.5
    assert result.ci_high - result.ci_low < 0.7 * (plain.ci_high - plain.ci_low)


@given(st.lists(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), min_size=3, max_size=40),
       st.lists(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), min_size=3, max_size=40))
def test_cuped_with_the_metric_as_covariate_removes_the_variance(xs: list[float], ys: list[float]) -> None:
    xc, xt = np.array(xs), np.array(ys)
    adjustment = cuped_adjust(covariate_moments(xc, xc), covariate_moments(xt, xt))
    scale = 1.0 + float(np.var(np.concatenate([xc, xt])))
    assert adjustment.control.variance <= 1e-6 * scale
    assert adjustment.treatment.variance <= 1e-6 * scale


def test_cuped_without_covariate_variance_is_plain_welch() -> None:
    rng = np.random.default_rng(9)
    xc, xt = rng.normal(10, 2, 300), rng.normal(10.5, 2, 300)
    ones_c, ones_t = np.ones(300), np.ones(300)
    cuped = cuped_welch_ttest(covariate_moments(xc, ones_c), covariate_moments(xt, ones_t))
    plain = welch_ttest(moments(xc), moments(xt))
    assert cuped.p_value == pytest.approx(plain.p_value, abs=1e-9)


def ratio_moments(num: NDArray[np.float64], den: NDArray[np.float64]) -> RatioStats:
    return RatioStats(len(num), float(num.sum()), float(den.sum()), float((num * num).sum()),
                      float((den * den).sum()), float((num * den).sum()))


def sessions_and_revenue(rng: np.random.Generator, n: int, per_session: float,
                         size: tuple[int, ...] = ()) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    sessions = 1.0 + rng.poisson(2.0, (*size, n)).astype(np.float64)
    revenue = rng.gamma(sessions * 0.5, 2.0 * per_session)
    return revenue, sessions


def test_ratio_delta_method_matches_linearised_raw_data() -> None:
    rng = np.random.default_rng(21)
    (num_c, den_c), (num_t, den_t) = sessions_and_revenue(rng, 1_500, 1.0), sessions_and_revenue(rng, 1_400, 1.1)
    result = ratio_ztest(ratio_moments(num_c, den_c), ratio_moments(num_t, den_t))

    def ratio_and_var(num: NDArray[np.float64], den: NDArray[np.float64]) -> tuple[float, float]:
        r = num.sum() / den.sum()
        return r, float(np.var(num - r * den, ddof=1) / (len(num) * den.mean() ** 2))

    (r_c, v_c), (r_t, v_t) = ratio_and_var(num_c, den_c), ratio_and_var(num_t, den_t)
    z = (r_t - r_c) / math.sqrt(v_c + v_t)
    assert result.method == "ratio_delta_z"
    assert (result.control_mean, result.treatment_mean) == pytest.approx((r_c, r_t), abs=GOLD)
    assert result.statistic == pytest.approx(z, abs=GOLD)
    assert result.p_value == pytest.approx(2 * sps.norm.sf(abs(z)), abs=GOLD)
    half = sps.norm.ppf(0.975) * math.sqrt(v_c + v_t)
    assert (result.ci_low, result.ci_high) == pytest.approx((r_t - r_c - half, r_t - r_c + half), abs=GOLD)


def test_ratio_interval_covers_the_true_ratio_difference() -> None:
    rng = np.random.default_rng(33)
    runs = 1_000
    num_c, den_c = sessions_and_revenue(rng, 500, 1.0, (runs,))
    num_t, den_t = sessions_and_revenue(rng, 500, 1.2, (runs,))
    truth = 1.2 - 1.0  # E[revenue] = sessions * 0.5 * 2 * per_session, so revenue per session = per_session
    covered = 0
    for i in range(runs):
        r = ratio_ztest(ratio_moments(num_c[i], den_c[i]), ratio_moments(num_t[i], den_t[i]))
        covered += r.ci_low <= truth <= r.ci_high
    assert 0.93 <= covered / runs <= 0.97


# -- Bayesian -----------------------------------------------------------------------------------


def exact_chance_to_beat(a_c: int, b_c: int, a_t: int, b_t: int) -> float:
    """Closed form of P(T > C) for Beta posteriors with integer treatment alpha (a finite sum)."""
    i = np.arange(a_t)
    log_terms = (betaln(a_c + i, b_c + b_t) - np.log(b_t + i) - betaln(1 + i, b_t)
                 - betaln(a_c, b_c))
    return float(np.exp(log_terms).sum())


@pytest.mark.parametrize(("conv_c", "n_c", "conv_t", "n_t"), [
    (100, 1_000, 120, 1_000), (30, 400, 25, 420), (510, 10_000, 515, 10_000), (0, 50, 3, 50),
])
def test_beta_binomial_matches_the_closed_form_and_monte_carlo(conv_c: int, n_c: int, conv_t: int,
                                                               n_t: int) -> None:
    result = beta_binomial(SampleStats(n_c, conv_c, conv_c), SampleStats(n_t, conv_t, conv_t))
    a_c, b_c, a_t, b_t = 1 + conv_c, 1 + n_c - conv_c, 1 + conv_t, 1 + n_t - conv_t
    assert result.method == "beta_binomial" and result.ok
    assert result.chance_to_beat_control == pytest.approx(exact_chance_to_beat(a_c, b_c, a_t, b_t), abs=GOLD)
    rng = np.random.default_rng(99)
    draws = 2_000_000
    c, t = rng.beta(a_c, b_c, draws), rng.beta(a_t, b_t, draws)
    for ours, sample in ((result.expected_loss, np.maximum(c - t, 0)),
                         (result.expected_loss_control, np.maximum(t - c, 0))):
        assert abs(ours - sample.mean()) <= 5 * sample.std() / math.sqrt(draws) + 1e-9
    assert result.control_mean == pytest.approx(a_c / (a_c + b_c))


def test_normal_means_with_a_flat_prior_agrees_with_the_z_statistic() -> None:
    rng = np.random.default_rng(41)
    xc, xt = rng.normal(20, 5, 2_000), rng.normal(20.3, 5, 2_000)
    result = normal_means(moments(xc), moments(xt))
    se = math.sqrt(xc.var(ddof=1) / 2_000 + xt.var(ddof=1) / 2_000)
    d = xt.mean() - xc.mean()
    assert result.chance_to_beat_control == pytest.approx(sps.norm.cdf(d / se), abs=GOLD)
    draws = rng.normal(d, se, 2_000_000)
    assert result.expected_loss == pytest.approx(np.maximum(-draws, 0).mean(), abs=5e-4 * se)
    assert result.expected_loss_control == pytest.approx(np.maximum(draws, 0).mean(), abs=5e-4 * se)
    assert result.expected_loss_control - result.expected_loss == pytest.approx(d, abs=GOLD)


def test_normal_prior_shrinks_towards_the_prior_mean() -> None:
    control, treatment = SampleStats(10, 100.0, 1_100.0), SampleStats(10, 130.0, 1_790.0)
    flat = normal_means(control, treatment)
    tight = normal_means(control, treatment, prior_mean=10.0, prior_variance=0.01)
    assert abs(tight.estimate) < abs(flat.estimate) / 10
    assert flat.chance_to_beat_control > 0.5
    assert not normal_means(SampleStats(1, 1.0, 1.0), treatment).ok


# -- sequential ---------------------------------------------------------------------------------

PEEK_EVERY = 100  # units per look, split evenly between the arms
LOOKS = 20


def peeked_sums(rng: np.random.Generator, experiments: int, effect: float
                ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Cumulative Σx and Σx² per experiment, arm and look: shape (experiments, 2, LOOKS)."""
    per_arm = PEEK_EVERY // 2
    values = rng.normal(5.0, 2.0, size=(experiments, 2, LOOKS * per_arm))
    values[:, 1, :] += effect
    idx = np.arange(per_arm, LOOKS * per_arm + 1, per_arm) - 1
    return np.cumsum(values, axis=2)[:, :, idx], np.cumsum(values * values, axis=2)[:, :, idx]


def rejections(sums: NDArray[np.float64], sums_sq: NDArray[np.float64], tau_sq: float) -> int:
    per_arm = PEEK_EVERY // 2
    rejected = 0
    for e in range(sums.shape[0]):
        for look in range(LOOKS):
            n = per_arm * (look + 1)
            c = SampleStats(n, float(sums[e, 0, look]), float(sums_sq[e, 0, look]))
            t = SampleStats(n, float(sums[e, 1, look]), float(sums_sq[e, 1, look]))
            if sequential_test(c, t, mixing_variance=tau_sq).p_value <= 0.05:
                rejected += 1
                break
    return rejected


def test_sequential_test_stays_under_alpha_when_peeking_every_100_units() -> None:
    experiments = 2_000
    sums, sums_sq = peeked_sums(np.random.default_rng(314), experiments, 0.0)
    rate = rejections(sums, sums_sq, tau_sq=0.3**2) / experiments
    assert rate <= 0.05
    # the same peeking with a fixed-horizon z-test would reject far more often
    n = (PEEK_EVERY // 2) * np.arange(1, LOOKS + 1)
    means = sums / n
    variances = (sums_sq - sums * means) / (n - 1)
    z = (means[:, 1] - means[:, 0]) / np.sqrt((variances[:, 0] + variances[:, 1]) / n)
    naive = np.mean(np.any(np.abs(z) > 1.959964, axis=1))
    assert naive > 0.15 > rate


def test_sequential_test_detects_a_real_effect_and_is_consistent() -> None:
    sums, sums_sq = peeked_sums(np.random.default_rng(2718), 200, 0.6)
    assert rejections(sums, sums_sq, tau_sq=0.3**2) / 200 > 0.8
    c, t = SampleStats(400, 2_000.0, 11_600.0), SampleStats(400, 2_200.0, 13_700.0)
    result = sequential_test(c, t, mixing_variance=0.25)
    fixed = welch_ttest(c, t)
    assert result.method == "msprt_normal_mixture"
    assert result.ci_low <= result.estimate <= result.ci_high
    assert result.ci_high - result.ci_low > fixed.ci_high - fixed.ci_low  # the price of peeking
    assert (result.p_value <= 0.05) == (result.ci_low > 0 or result.ci_high < 0)
    for alpha in (0.01, 0.2):
        at = sequential_test(c, t, mixing_variance=0.25, alpha=alpha)
        assert (at.p_value <= alpha) == (at.ci_low > 0 or at.ci_high < 0)
    with pytest.raises(ValueError, match="mixing_variance"):
        sequential_test(c, t, mixing_variance=0.0)
