"""Experiment results from the store: sufficient statistics by SQL, assembled by ``rapport.experiments.results``.

Units are the exposed units of ``experiment_exposures`` (a placement decision or a journey split recorded
them with the experiment's consent purpose checked at that moment), each person once (see
``rapport.storage.sql.experiment_results``), and only those whose live profile allowed the purpose at their
first exposure (a later withdrawal keeps them, so a variant that drives people away is measured). Each unit's
metric is read from the stored events of its live profile, from its first exposure: events of profiles merged
into it count, events kept minimized for lack of analytics consent (``restricted``) do not, so measurement uses
only what the person allowed. A metric counts only units whose whole window is over; the others are reported as
still in window. A metric with a ``where`` rule over event properties is filtered in Python (the rule
evaluator), all others are summed by SQL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping

import orjson

from rapport.consent.decide import may_use
from rapport.consent.model import NECESSARY
from rapport.consent.purposes import Catalog
from rapport.experiments import definitions
from rapport.experiments.assign import GlobalHoldout
from rapport.experiments.definitions import HOLDOUT_ARM, ExperimentDef, Measure, MetricDef
from rapport.experiments.results import ExperimentResults, Role, Sums, assemble
from rapport.rules import parse
from rapport.rules.evaluate import evaluate_where
from rapport.storage.base import Conn
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import experiment_results as sql
from rapport.storage.sql import exposures as exposures_sql
from rapport.storage.sql import identity as identity_sql
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
    """The latest first exposure a unit may have to count in ``metric``: its whole window (or retention day) must
    be over, so that every counted unit had the same time to convert; later units are still in window."""
    return now - metric.end


def population(rt: WorkspaceRuntime, experiment: ExperimentDef, now: Millis) -> sql.Population:
    """The units of ``experiment`` an analysis at ``now`` counts: those allowing its purpose at ``now``. A purpose
    the catalog does not know admits nobody (deny by default)."""
    purpose = rt.catalog.purposes.get(experiment.purpose)
    if purpose is None:
        return sql.Population(experiment.name, now, experiment.purpose, True, experiment.holdout_arm)
    if purpose.name == NECESSARY:
        return sql.Population(experiment.name, now, None, False, experiment.holdout_arm)
    return sql.Population(experiment.name, now, purpose.name, purpose.legal_basis == "consent",
                          experiment.holdout_arm)


def metric_sums(conn: Conn, ws: str, pop: sql.Population, metric: MetricDef,
                segment: str | None = None) -> dict[str, Sums]:
    """Per arm, the sufficient statistics of ``metric`` (and of its covariate or denominator) over the units of
    ``pop`` whose window is over."""
    x, y = spans(metric)
    until = first_until(metric, pop.now)
    measures = (metric.value, metric.denominator or metric.value)
    if all(m.where is None for m in measures):
        rows = sql.moments(conn, ws, pop, x, y, first_until=until, segment=segment)
        return {str(r[0]): Sums(int(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]), float(r[6]))
                for r in rows}
    units = sql.units(conn, ws, pop, first_until=until, segment=segment)
    xs = _unit_values(conn, ws, pop, measures[0], x, until, segment)
    ys = _unit_values(conn, ws, pop, measures[1], y, until, segment)
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


def _unit_values(conn: Conn, ws: str, pop: sql.Population, measure: Measure, agg: sql.Aggregate, until: Millis,
                 segment: str | None) -> dict[str, float]:
    """Each unit's measure over ``agg``'s span, filtering events with the measure's ``where`` rule."""
    where = parse(measure.where) if measure.where is not None else None
    out: dict[str, float] = defaultdict(float)
    for unit, ts, body in sql.unit_events(conn, ws, pop, agg.event, agg.start, agg.end, first_until=until,
                                          segment=segment):
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


def _roles(experiment: ExperimentDef, metrics: Mapping[str, MetricDef]) -> list[tuple[MetricDef, Role]]:
    roles: list[tuple[str, Role]] = [(name, "primary" if i == 0 else "secondary")
                                     for i, name in enumerate(experiment.metrics)]
    roles += [(name, "guardrail") for name in experiment.guardrails]
    return [(metrics[name], role) for name, role in roles if name in metrics]


def _metric_inputs(conn: Conn, ws: str, pop: sql.Population, roles: list[tuple[MetricDef, Role]],
                   segment: str | None) -> list[MetricInput]:
    return [(metric, role, metric_sums(conn, ws, pop, metric, segment)) for metric, role in roles]


def results(conn: Conn, rt: WorkspaceRuntime, name: str, now: Millis) -> ExperimentResults:
    """The results of experiment ``name`` at ``now``; ``NotFoundError`` for an unknown experiment."""
    experiment = definitions.experiment(rt.specs, name)
    roles = _roles(experiment, definitions.metrics(rt.specs))
    pop = population(rt, experiment, now)
    units, held_out = unit_counts(conn, rt.id, pop)
    inputs = _metric_inputs(conn, rt.id, pop, roles, None)
    segments = [(segment, _metric_inputs(conn, rt.id, pop, roles, segment)) for segment in experiment.segments]
    pending: dict[Millis, dict[str, int]] = {}
    for metric, _ in roles:
        if metric.end not in pending:
            pending[metric.end] = unit_counts(conn, rt.id, pop, first_after=first_until(metric, now))[0]
    in_window = {metric.name: pending[metric.end] for metric, _ in roles}
    return assemble(experiment, now, units, held_out, inputs, segments, in_window=in_window,
                    min_cell_count=rt.settings.min_cell_count)


def unit_counts(conn: Conn, ws: str, pop: sql.Population, first_after: Millis | None = None,
                ) -> tuple[dict[str, int], dict[str, int]]:
    """Units per arm, and held-out units per reason (a journey split's holdout is an arm with
    ``pop.holdout_arm``); with ``first_after`` only units first exposed after that instant. Whatever reason a
    unit with a variant was recorded with, it counts in its variant's arm."""
    units: dict[str, int] = {}
    held: dict[str, int] = {}
    for variant, reason, count in sql.counts(conn, ws, pop, first_after=first_after):
        if variant is None and pop.holdout_arm and reason == HOLDOUT_ARM:
            units[HOLDOUT_ARM] = units.get(HOLDOUT_ARM, 0) + int(count)
        elif variant is None:
            held[str(reason)] = held.get(str(reason), 0) + int(count)
        else:
            units[str(variant)] = units.get(str(variant), 0) + int(count)
    return units, held


def overview(conn: Conn, rt: WorkspaceRuntime, now: Millis) -> list[JsonObject]:
    """Every experiment with its target, status, metrics and units per variant (counted as the results count
    them at ``now``)."""
    out: list[JsonObject] = []
    for name, e in definitions.experiments(rt.specs).items():
        units, held = unit_counts(conn, rt.id, population(rt, e, now))
        first = sql.first_exposure(conn, rt.id, name)
        out.append({"name": name, "status": e.status, "source": e.source, "purpose": e.purpose,
                    "control": e.control, "metrics": list(e.metrics), "guardrails": list(e.guardrails),
                    "variants": [{"name": v.name, "weight": v.weight, "units": units.get(v.name, 0)}
                                 for v in e.variants],
                    "held_out": held, "first_exposure_at": first, "version": rt.versions.get(("Experiment", name))})
    return out


SplitHook = Callable[[Conn, str, str, str, str, bool, str, Millis], None]
"""(conn, workspace, journey, split step id, path, held out by the split, enrollment's profile, at): what a journey
engine calls when an enrollment passes a split."""


def split_hook(rt: WorkspaceRuntime) -> SplitHook | None:
    """The journey engine's hook recording split exposures for the experiments of ``rt`` (None without any)."""
    by_split = definitions.split_experiments(rt.specs)
    if not by_split:
        return None
    measured = {name: definitions.experiment(rt.specs, name) for name in set(by_split.values())}
    holdout = rt.settings.holdout()

    def hook(conn: Conn, ws: str, journey: str, split: str, path: str, held_out: bool, profile_id: str,
             at: Millis) -> None:
        name = by_split.get((journey, split))
        if name is not None:
            record_split(conn, ws, rt.catalog, measured[name], path, held_out, profile_id, at, holdout)

    return hook


def record_split(conn: Conn, ws: str, catalog: Catalog, experiment: ExperimentDef, path: str, held_out: bool,
                 profile_id: str, at: Millis, global_holdout: GlobalHoldout | None = None) -> str | None:
    """Record that the enrollment of ``profile_id`` passed the split ``experiment`` measures, when it is to be
    measured; returns the reason recorded, or None when nothing was.

    Nothing is recorded while the experiment is stopped, or when the person (their live profile) does not allow
    the experiment's purpose at ``at`` (deny by default: no grant, no record). A person in the workspace's global
    holdout is recorded without a variant, reason ``global_holdout``: the gate refuses their messages, so they
    are counted apart, never in an arm. Otherwise the split's path is the variant (reason ``variant``), or none
    for the split's own holdout (reason ``holdout``). The unit is the profile id the split hashed (the
    enrollment's profile), as a placement's unit is the profile its sticky assignment was made for; results
    follow it to its live profile."""
    if experiment.status != "running":
        return None
    purpose = catalog.purposes.get(experiment.purpose)
    if purpose is None:
        return None
    root = identity_sql.live_root(conn, ws, profile_id) or profile_id
    ledger = [consent_sql.ledger_entry(r) for r in consent_sql.entries(conn, ws, [root])]
    if not may_use(ledger, purpose, at).allowed:
        return None
    variant: str | None
    if global_holdout is not None and global_holdout.holds(root):
        variant, reason = None, "global_holdout"
    elif held_out:
        variant, reason = None, "holdout"
    else:
        variant, reason = path, "variant"
    exposures_sql.record(conn, ws, profile_id, experiment.name, variant, reason, experiment.source, at)
    return reason
