"""Experiment results from the store: sufficient statistics by SQL, assembled by ``rapport.experiments.results``.

Units are the exposed units of ``experiment_exposures`` (a placement decision or a journey split recorded
them with the experiment's consent purpose checked at that moment). Each unit's metric is read from the
stored events of its live profile, from its first exposure: events of profiles merged into it count, events
kept minimized for lack of analytics consent (``restricted``) do not, so measurement uses only what the
person allowed. A metric with a ``where`` rule over event properties is filtered in Python (the rule
evaluator), all others are summed by SQL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import orjson

from rapport.experiments import definitions
from rapport.experiments.definitions import HOLDOUT_ARM, ExperimentDef, Measure, MetricDef
from rapport.experiments.results import ExperimentResults, Role, Sums, assemble
from rapport.rules import parse
from rapport.rules.evaluate import evaluate_where
from rapport.storage.base import Conn
from rapport.storage.sql import experiment_results as sql
from rapport.storage.sql import exposures as exposures_sql
from rapport.types import JsonObject, Millis
from rapport.workspaces.runtime import WorkspaceRuntime

MetricInput = tuple[MetricDef, Role, Mapping[str, Sums]]


def spans(metric: MetricDef) -> tuple[sql.Aggregate, sql.Aggregate]:
    """The two per-unit measures of a metric: its value after exposure, and either a ratio's denominator over the
    same span or the same measure over the equal-length span just before exposure (the CUPED covariate)."""
    value = metric.value
    x = sql.Aggregate(value.event, value.prop, value.exists, metric.start, metric.end)
    if metric.denominator is not None:
        den = metric.denominator
        return x, sql.Aggregate(den.event, den.prop, den.exists, metric.start, metric.end)
    return x, sql.Aggregate(value.event, value.prop, value.exists, -metric.end, 0)


def first_until(metric: MetricDef, now: Millis) -> Millis:
    """The latest first exposure a unit may have to count: a retention day must be over; other metrics count
    every unit, their windows cut at ``now``."""
    return now - metric.end if metric.type == "retention" else now


def metric_sums(conn: Conn, ws: str, experiment: str, metric: MetricDef, now: Millis,
                segment: str | None = None, holdout_arm: bool = False) -> dict[str, Sums]:
    """Per variant, the sufficient statistics of ``metric`` (and of its covariate or denominator); with
    ``holdout_arm`` the held-out units of a journey split form the variant ``holdout``."""
    x, y = spans(metric)
    until = first_until(metric, now)
    measures = (metric.value, metric.denominator or metric.value)
    if all(m.where is None for m in measures):
        rows = sql.moments(conn, ws, experiment, x, y, now=now, first_until=until, segment=segment,
                           holdout_arm=holdout_arm)
        return {str(r[0]): Sums(int(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]), float(r[6]))
                for r in rows}
    units = sql.units(conn, ws, experiment, first_until=until, segment=segment, holdout_arm=holdout_arm)
    xs = _unit_values(conn, ws, experiment, measures[0], x, now, until, segment, holdout_arm)
    ys = _unit_values(conn, ws, experiment, measures[1], y, now, until, segment, holdout_arm)
    return sums_of([(str(variant), xs.get(str(unit), 0.0), ys.get(str(unit), 0.0)) for unit, variant, _, _ in units])


def sums_of(values: list[tuple[str, float, float]]) -> dict[str, Sums]:
    """Per variant, the sums of (variant, x, y) per unit: what the SQL returns, computed in Python."""
    acc: dict[str, list[float]] = defaultdict(lambda: [0.0] * 6)
    for variant, x, y in values:
        a = acc[variant]
        a[0] += 1
        a[1] += x
        a[2] += x * x
        a[3] += y
        a[4] += y * y
        a[5] += x * y
    return {v: Sums(int(a[0]), a[1], a[2], a[3], a[4], a[5]) for v, a in sorted(acc.items())}


def _unit_values(conn: Conn, ws: str, experiment: str, measure: Measure, agg: sql.Aggregate, now: Millis,
                 until: Millis, segment: str | None, holdout_arm: bool) -> dict[str, float]:
    """Each unit's measure over ``agg``'s span, filtering events with the measure's ``where`` rule."""
    where = parse(measure.where) if measure.where is not None else None
    out: dict[str, float] = defaultdict(float)
    for unit, ts, body in sql.unit_events(conn, ws, experiment, agg.event, agg.start, agg.end, now=now,
                                          first_until=until, segment=segment, holdout_arm=holdout_arm):
        loaded = orjson.loads(body)
        properties = loaded.get("properties") if isinstance(loaded, dict) else None
        props: JsonObject = properties if isinstance(properties, dict) else {}
        if where is not None and not evaluate_where(where, props, int(ts)):
            continue
        key = str(unit)
        if agg.exists:
            out[key] = 1.0
        elif agg.prop is None:
            out[key] += 1.0
        else:
            value = props.get(agg.prop)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[key] += float(value)
    return dict(out)


def _metric_inputs(conn: Conn, ws: str, experiment: ExperimentDef, metrics: Mapping[str, MetricDef],
                   now: Millis, segment: str | None) -> list[MetricInput]:
    roles: list[tuple[str, Role]] = [(name, "primary" if i == 0 else "secondary")
                                     for i, name in enumerate(experiment.metrics)]
    roles += [(name, "guardrail") for name in experiment.guardrails]
    return [(metrics[name], role, metric_sums(conn, ws, experiment.name, metrics[name], now, segment,
                                              experiment.holdout_arm))
            for name, role in roles if name in metrics]


def results(conn: Conn, rt: WorkspaceRuntime, name: str, now: Millis) -> ExperimentResults:
    """The results of experiment ``name`` at ``now``; ``NotFoundError`` for an unknown experiment."""
    experiment = definitions.experiment(rt.specs, name)
    metrics = definitions.metrics(rt.specs)
    units, held_out = unit_counts(conn, rt.id, name, experiment.holdout_arm)
    inputs = _metric_inputs(conn, rt.id, experiment, metrics, now, None)
    segments = [(segment, _metric_inputs(conn, rt.id, experiment, metrics, now, segment))
                for segment in experiment.segments]
    return assemble(experiment, now, units, held_out, inputs, segments)


def unit_counts(conn: Conn, ws: str, experiment: str, holdout_arm: bool = False,
                ) -> tuple[dict[str, int], dict[str, int]]:
    """Exposed units per variant, and held-out units per reason (a journey split's holdout is a variant with
    ``holdout_arm``)."""
    units: dict[str, int] = {}
    held: dict[str, int] = {}
    for variant, reason, count in sql.counts(conn, ws, experiment):
        if variant is None and holdout_arm and reason == HOLDOUT_ARM:
            units[HOLDOUT_ARM] = units.get(HOLDOUT_ARM, 0) + int(count)
        elif variant is None:
            held[str(reason)] = held.get(str(reason), 0) + int(count)
        else:
            units[str(variant)] = units.get(str(variant), 0) + int(count)
    return units, held


def overview(conn: Conn, rt: WorkspaceRuntime) -> list[JsonObject]:
    """Every experiment with its target, status, metrics and units per variant."""
    out: list[JsonObject] = []
    for name, e in definitions.experiments(rt.specs).items():
        units, held = unit_counts(conn, rt.id, name, e.holdout_arm)
        first = sql.first_exposure(conn, rt.id, name)
        out.append({"name": name, "status": e.status, "source": e.source, "purpose": e.purpose,
                    "control": e.control, "metrics": list(e.metrics), "guardrails": list(e.guardrails),
                    "variants": [{"name": v.name, "weight": v.weight, "units": units.get(v.name, 0)}
                                 for v in e.variants],
                    "held_out": held, "first_exposure_at": first, "version": rt.versions.get(("Experiment", name))})
    return out


def record_split(conn: Conn, ws: str, experiment: str, journey: str, split: str, path: str, held_out: bool,
                 profile_id: str, at: Millis) -> None:
    """Record that the enrollment of ``profile_id`` passed the split an experiment measures.

    The unit is the profile id the split hashed (the enrollment's profile), as a placement's unit is the profile
    its sticky assignment was made for; results follow it to its live profile."""
    exposures_sql.record(conn, ws, profile_id, experiment, None if held_out else path,
                         "holdout" if held_out else "variant", f"journey:{journey}/{split}", at)
