"""Experiment results assembled from sufficient statistics (pure: no I/O, no clock).

Per metric and per variant against control: the test that fits the metric's type (two-proportion z for
conversion and retention, Welch t for revenue and count, the delta method for ratios), the difference
and relative lift with intervals, p-values corrected across metrics × variants (Holm decides; Benjamini–
Hochberg is reported beside it), the Bayesian chance to beat control and expected loss, the always-valid
mSPRT p-value and confidence sequence, and the CUPED estimate with the same metric over the equal-length
span before exposure as covariate. A sample-ratio mismatch (χ² against the configured weights,
α = 0.001) marks the whole result untrustworthy; a guardrail that moves the wrong way with p < α is flagged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Literal

from rapport.experiments.definitions import ExperimentDef, MetricDef
from rapport.experiments.stats import (
    BayesResult,
    CovariateStats,
    RatioStats,
    SampleStats,
    SrmResult,
    TestResult,
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
from rapport.types import JsonObject, Millis

Role = Literal["primary", "secondary", "guardrail"]
DEFAULT_MDE = 0.1
"""Relative effect the sequential test is tuned to when a metric states no ``min_detectable_effect``."""


@dataclass(frozen=True, slots=True)
class Sums:
    """One variant's sufficient statistics of a metric: n, Σx, Σx², and Σy, Σy², Σxy of its second measure
    (the pre-exposure covariate, or a ratio's denominator)."""

    n: int
    sx: float = 0.0
    sxx: float = 0.0
    sy: float = 0.0
    syy: float = 0.0
    sxy: float = 0.0

    @property
    def sample(self) -> SampleStats:
        return SampleStats(self.n, self.sx, self.sxx)

    @property
    def covariate(self) -> CovariateStats:
        return CovariateStats(self.n, self.sx, self.sxx, self.sy, self.syy, self.sxy)

    @property
    def ratio(self) -> RatioStats:
        return RatioStats(self.n, self.sx, self.sy, self.sxx, self.syy, self.sxy)


@dataclass(frozen=True, slots=True)
class Comparison:
    """One variant against control on one metric."""

    variant: str
    test: TestResult
    p_holm: float | None = None
    p_bh: float | None = None
    bayes: BayesResult | None = None
    sequential: TestResult | None = None
    cuped: TestResult | None = None
    cuped_theta: float | None = None
    cuped_variance_reduction: float | None = None
    outcome: Literal["better", "worse", "inconclusive"] = "inconclusive"
    guardrail_violated: bool = False


@dataclass(frozen=True, slots=True)
class MetricResult:
    metric: MetricDef
    role: Role
    sums: Mapping[str, Sums]
    comparisons: tuple[Comparison, ...]
    omnibus: tuple[float, int, float] | None = None
    """χ² statistic, degrees of freedom and p-value across all variants of a conversion metric (3+ variants)."""
    suppressed: tuple[str, ...] = ()
    """Variants whose cell has fewer units than the workspace's minimum: not shown, not compared."""
    in_window: Mapping[str, int] = field(default_factory=dict)
    """Per variant, the units exposed too recently for their window to be over: not counted yet."""


@dataclass(frozen=True, slots=True)
class SegmentResult:
    segment: str
    metrics: tuple[MetricResult, ...]


@dataclass(frozen=True, slots=True)
class ExperimentResults:
    experiment: ExperimentDef
    at: Millis
    units: Mapping[str, int]
    held_out: Mapping[str, int]
    srm: SrmResult | None
    metrics: tuple[MetricResult, ...]
    segments: tuple[SegmentResult, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def trustworthy(self) -> bool:
        return self.srm is None or not self.srm.mismatch

    @property
    def guardrails_violated(self) -> list[str]:
        return sorted({m.metric.name for m in self.metrics for c in m.comparisons if c.guardrail_violated})


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _primary_test(metric: MetricDef, control: Sums, treatment: Sums, alpha: float) -> TestResult:
    if metric.type == "ratio":
        return ratio_ztest(control.ratio, treatment.ratio, alpha=alpha)
    if metric.binary:
        return two_proportion_ztest(control.sample, treatment.sample, alpha=alpha)
    return welch_ttest(control.sample, treatment.sample, alpha=alpha)


def _ratio_bayes(test: TestResult, alpha: float) -> BayesResult | None:
    """Normal posterior of a ratio difference (flat prior, delta-method variance) from its test."""
    if test.status not in ("ok", "zero_baseline"):
        return None
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    sd = (test.ci_high - test.ci_low) / (2.0 * z)
    if not sd > 0:
        return None
    d = test.estimate
    normal = NormalDist()
    loss_t = sd * normal.pdf(d / sd) - d * normal.cdf(-d / sd)
    loss_c = sd * normal.pdf(d / sd) + d * normal.cdf(d / sd)
    return BayesResult("normal_delta", test.control_mean, test.treatment_mean, d, test.ci_low, test.ci_high,
                       test.lift, test.lift_ci_low, test.lift_ci_high, normal.cdf(d / sd), max(loss_t, 0.0),
                       max(loss_c, 0.0))


def mixing_variance(metric: MetricDef, control: Sums, treatment: Sums) -> float | None:
    """τ² of the sequential test: (MDE × control mean)², or (MDE × pooled sd)² when the control mean is 0."""
    mde = metric.min_detectable_effect or DEFAULT_MDE
    mean = control.sample.mean
    if math.isfinite(mean) and mean != 0:
        return (mde * mean) ** 2
    pooled = SampleStats(control.n + treatment.n, control.sx + treatment.sx, control.sxx + treatment.sxx).variance
    if math.isfinite(pooled) and pooled > 0:
        return mde**2 * pooled
    return None


def compare(metric: MetricDef, control: Sums, treatment: Sums, variant: str, alpha: float,
            cuped: bool = True) -> Comparison:
    """Every test of one variant against control (corrections and outcome are set by ``analyse``)."""
    test = _primary_test(metric, control, treatment, alpha)
    bayes: BayesResult | None
    sequential: TestResult | None = None
    adjusted: TestResult | None = None
    theta = reduction = None
    if metric.type == "ratio":
        bayes = _ratio_bayes(test, alpha)
    else:
        bayes = (beta_binomial(control.sample, treatment.sample, level=1.0 - alpha) if metric.binary
                 else normal_means(control.sample, treatment.sample, level=1.0 - alpha))
        if not bayes.ok:
            bayes = None
        tau_sq = mixing_variance(metric, control, treatment)
        if tau_sq is not None:
            sequential = sequential_test(control.sample, treatment.sample, mixing_variance=tau_sq, alpha=alpha)
        if cuped:
            adjusted = cuped_welch_ttest(control.covariate, treatment.covariate, alpha=alpha)
            adjustment = cuped_adjust(control.covariate, treatment.covariate)
            theta, reduction = adjustment.theta, _finite(adjustment.variance_reduction)
    return Comparison(variant, test, bayes=bayes, sequential=sequential, cuped=adjusted, cuped_theta=theta,
                      cuped_variance_reduction=reduction)


def small_cells(sums: Mapping[str, Sums], min_cell_count: int) -> tuple[str, ...]:
    """The variants whose cell holds some units, but fewer than ``min_cell_count``."""
    return tuple(sorted(name for name, s in sums.items() if 0 < s.n < min_cell_count))


def analyse(experiment: ExperimentDef, metrics: Sequence[tuple[MetricDef, Role, Mapping[str, Sums]]],
            min_cell_count: int = 0) -> tuple[MetricResult, ...]:
    """Compare every variant with control on every metric, then correct the p-values of the whole family.

    With ``min_cell_count``, a variant whose cell holds fewer units is suppressed: its sums are dropped and it
    is compared with nothing (a suppressed control suppresses every comparison of the metric), so no number
    shown is computed from a small cell."""
    alpha = experiment.alpha
    names = [v.name for v in experiment.variants]
    drafts: list[tuple[MetricDef, Role, Mapping[str, Sums], list[Comparison], tuple[str, ...]]] = []
    for metric, role, all_sums in metrics:
        hidden = small_cells(all_sums, min_cell_count)
        shown = {name: s for name, s in all_sums.items() if name not in hidden}
        control = shown.get(experiment.control, Sums(0))
        comparisons = [] if experiment.control in hidden else [
            compare(metric, control, shown.get(name, Sums(0)), name, alpha)
            for name in names if name != experiment.control and name not in hidden]
        drafts.append((metric, role, shown, comparisons, hidden))
    family = [(i, j) for i, (_, _, _, cs, _) in enumerate(drafts) for j, c in enumerate(cs)
              if math.isfinite(c.test.p_value)]
    raw = [drafts[i][3][j].test.p_value for i, j in family]
    adjusted = dict(zip(family, zip(holm(raw), benjamini_hochberg(raw), strict=True), strict=True))
    out: list[MetricResult] = []
    for i, (metric, role, sums, comparisons, hidden) in enumerate(drafts):
        done = []
        for j, c in enumerate(comparisons):
            p_holm, p_bh = adjusted.get((i, j), (None, None))
            good = c.test.estimate > 0 if metric.direction == "increase" else c.test.estimate < 0
            outcome: Literal["better", "worse", "inconclusive"] = "inconclusive"
            if p_holm is not None and p_holm < alpha:
                outcome = "better" if good else "worse"
            violated = (role == "guardrail" and math.isfinite(c.test.p_value) and c.test.p_value < alpha
                        and not good and c.test.estimate != 0)
            done.append(Comparison(c.variant, c.test, p_holm, p_bh, c.bayes, c.sequential, c.cuped, c.cuped_theta,
                                   c.cuped_variance_reduction, outcome, violated))
        omnibus = None
        if metric.binary and len(names) > 2 and not hidden:
            chi = conversion_chi_square([sums.get(n, Sums(0)).sample for n in names])
            omnibus = (chi.statistic, chi.dof, chi.p_value) if chi.ok else None
        out.append(MetricResult(metric, role, sums, tuple(done), omnibus, hidden))
    return tuple(out)


def srm(experiment: ExperimentDef, units: Mapping[str, int]) -> SrmResult | None:
    """The sample-ratio check of the exposed units per variant against the configured weights."""
    if len(experiment.variants) < 2:
        return None
    return srm_check([units.get(v.name, 0) for v in experiment.variants], [v.weight for v in experiment.variants])


def assemble(experiment: ExperimentDef, at: Millis, units: Mapping[str, int], held_out: Mapping[str, int],
             metrics: Sequence[tuple[MetricDef, Role, Mapping[str, Sums]]],
             segments: Sequence[tuple[str, Sequence[tuple[MetricDef, Role, Mapping[str, Sums]]]]] = (),
             *, in_window: Mapping[str, Mapping[str, int]] | None = None, min_cell_count: int = 0,
             ) -> ExperimentResults:
    """The whole result of an experiment at ``at`` from its unit counts and each metric's sums per variant.

    ``in_window`` gives, per metric, the units per variant whose window is not over yet (not in the sums);
    per-segment cells under ``min_cell_count`` units are suppressed (the whole experiment's are not: its arms
    are the experiment's own units, shown in ``units`` anyway)."""
    check = srm(experiment, units)
    warnings: list[str] = []
    if check is not None and check.mismatch:
        warnings.append(f"sample ratio mismatch (chi-square p = {check.p_value:.2g} < {check.alpha}): the units per "
                        "variant do not follow the configured weights; the results are not trustworthy until the "
                        "cause (assignment, exposure logging, bots) is found")
    if sum(units.values()) == 0:
        warnings.append("no exposed units yet")
    pending = in_window or {}
    overall = tuple(replace(m, in_window=dict(pending.get(m.metric.name, {})))
                    for m in analyse(experiment, metrics))
    results = ExperimentResults(experiment, at, dict(units), dict(held_out), check, overall,
                                tuple(SegmentResult(name, analyse(experiment, ms, min_cell_count))
                                      for name, ms in segments))
    waiting = [f"{m.metric.name} {sum(m.in_window.values())}" for m in overall if sum(m.in_window.values())]
    if waiting:
        warnings.append("units exposed too recently for their metric window to be over are not counted yet: "
                        + ", ".join(waiting))
    hidden = sorted({f"{s.segment}/{m.metric.name}" for s in results.segments for m in s.metrics if m.suppressed})
    if hidden:
        warnings.append(f"segment cells with fewer than {min_cell_count} units are suppressed: {', '.join(hidden)}")
    violated = results.guardrails_violated
    if violated:
        warnings.append(f"guardrail metric(s) moved the wrong way significantly: {', '.join(violated)}")
    return ExperimentResults(results.experiment, at, results.units, results.held_out, check, results.metrics,
                             results.segments, tuple(warnings))


# --- JSON ---------------------------------------------------------------------------------------------------


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _test_json(t: TestResult) -> JsonObject:
    return {"method": t.method, "status": t.status, "control_mean": _num(t.control_mean),
            "treatment_mean": _num(t.treatment_mean), "estimate": _num(t.estimate), "ci": [_num(t.ci_low),
            _num(t.ci_high)], "lift": _num(t.lift), "lift_ci": [_num(t.lift_ci_low), _num(t.lift_ci_high)],
            "p_value": _num(t.p_value), "statistic": _num(t.statistic)}


def _comparison_json(c: Comparison) -> JsonObject:
    bayes = None if c.bayes is None else {
        "method": c.bayes.method, "chance_to_beat_control": _num(c.bayes.chance_to_beat_control),
        "expected_loss": _num(c.bayes.expected_loss), "expected_loss_control": _num(c.bayes.expected_loss_control),
        "credible_interval": [_num(c.bayes.ci_low), _num(c.bayes.ci_high)]}
    sequential = None if c.sequential is None else {
        "method": c.sequential.method, "p_value": _num(c.sequential.p_value),
        "confidence_sequence": [_num(c.sequential.ci_low), _num(c.sequential.ci_high)],
        "lift_confidence_sequence": [_num(c.sequential.lift_ci_low), _num(c.sequential.lift_ci_high)]}
    cuped = None if c.cuped is None else {**_test_json(c.cuped), "theta": _num(c.cuped_theta),
                                          "variance_reduction": _num(c.cuped_variance_reduction)}
    return {"variant": c.variant, **_test_json(c.test), "p_holm": _num(c.p_holm), "p_bh": _num(c.p_bh),
            "outcome": c.outcome, "guardrail_violated": c.guardrail_violated, "bayes": bayes,
            "sequential": sequential, "cuped": cuped}


def _metric_json(m: MetricResult, variants: Sequence[str], segment: bool = False) -> JsonObject:
    """One metric's cells and comparisons; the whole experiment's also say how many units per variant are still
    in window (a segment's are a subset of those), a segment's which cells are suppressed."""
    per_variant: list[JsonObject] = []
    for name in variants:
        s = m.sums.get(name, Sums(0))
        if name in m.suppressed:
            per_variant.append({"variant": name, "suppressed": True, "units": None})
        elif m.metric.type == "ratio":
            mean = s.sx / s.sy if s.sy else None
            per_variant.append({"variant": name, "units": s.n, "numerator": s.sx, "denominator": s.sy,
                                "value": _num(mean)})
        else:
            per_variant.append({"variant": name, "units": s.n, "total": s.sx, "mean": _num(s.sample.mean),
                                "sum_sq": s.sxx})
    omnibus = None if m.omnibus is None else {"method": "chi_square", "statistic": _num(m.omnibus[0]),
                                              "dof": m.omnibus[1], "p_value": _num(m.omnibus[2])}
    out: JsonObject = {"metric": m.metric.name, "type": m.metric.type, "role": m.role,
                       "direction": m.metric.direction, "variants": per_variant,
                       "comparisons": [_comparison_json(c) for c in m.comparisons], "omnibus": omnibus}
    if segment:
        out["suppressed"] = list(m.suppressed)
    else:
        out["in_window"] = {name: m.in_window.get(name, 0) for name in variants}
    return out


def to_json(r: ExperimentResults) -> JsonObject:
    """The results as the API returns them (non-finite numbers as null)."""
    from rapport.clock import to_iso

    e = r.experiment
    names = [v.name for v in e.variants]
    srm_json = None if r.srm is None else {
        "statistic": _num(r.srm.statistic), "dof": r.srm.dof, "p_value": _num(r.srm.p_value), "alpha": r.srm.alpha,
        "mismatch": r.srm.mismatch,
        "expected_share": {v.name: v.weight / sum(w.weight for w in e.variants) for v in e.variants}}
    return {
        "experiment": e.name, "status": e.status, "source": e.source, "purpose": e.purpose, "control": e.control,
        "alpha": e.alpha, "at": to_iso(r.at), "trustworthy": r.trustworthy, "warnings": list(r.warnings),
        "units": {name: r.units.get(name, 0) for name in names}, "held_out": dict(r.held_out), "srm": srm_json,
        "guardrails_violated": r.guardrails_violated,
        "metrics": [_metric_json(m, names) for m in r.metrics],
        "segments": [{"segment": s.segment, "metrics": [_metric_json(m, names, True) for m in s.metrics]}
                     for s in r.segments],
    }
