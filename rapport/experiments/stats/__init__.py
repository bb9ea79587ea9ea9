"""Pure statistics engine on sufficient statistics (n, Σx, Σx² per variant)."""

from rapport.experiments.stats.bayesian import BayesResult, beta_binomial, normal_means
from rapport.experiments.stats.corrections import benjamini_hochberg, holm
from rapport.experiments.stats.cuped import (
    AdjustedMoments,
    CupedAdjustment,
    cuped_adjust,
    cuped_welch_ttest,
    ratio_ztest,
)
from rapport.experiments.stats.frequentist import (
    SRM_ALPHA,
    ChiSquareResult,
    SrmResult,
    conversion_chi_square,
    srm_check,
    two_proportion_ztest,
    welch_ttest,
)
from rapport.experiments.stats.moments import (
    CovariateStats,
    RatioStats,
    SampleStats,
    Status,
    TestResult,
)
from rapport.experiments.stats.sequential import sequential_test

__all__ = [
    "SRM_ALPHA",
    "AdjustedMoments",
    "BayesResult",
    "ChiSquareResult",
    "CovariateStats",
    "CupedAdjustment",
    "RatioStats",
    "SampleStats",
    "SrmResult",
    "Status",
    "TestResult",
    "benjamini_hochberg",
    "beta_binomial",
    "conversion_chi_square",
    "cuped_adjust",
    "cuped_welch_ttest",
    "holm",
    "normal_means",
    "ratio_ztest",
    "sequential_test",
    "srm_check",
    "two_proportion_ztest",
    "welch_ttest",
]
