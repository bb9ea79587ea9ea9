"""Models against storage: the training snapshot, the catalog of versions, serving and writing scores back.

Training reads a point-in-time snapshot: the cutoff is ``now - target.within``; the population is
the live profiles that existed at the cutoff, were in the audience then, and have the model's purpose
both at the cutoff and now (now is when their data is used); features are computed traits evaluated
as of the cutoff from their buckets; the label is whether a target event (matching ``where``) has an
event time in ``(cutoff, now]`` (negated with ``negate``), read from the events table.

Scores are written as buckets of the model's hidden series (``rapport.models.spec``) in the same
transaction that re-evaluates the segments reading them; people without the purpose (or out of the
audience) now get an empty score, so ``computed.<write_to>`` is missing for them from then on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import orjson

from rapport.clock import Clock
from rapport.consent.decide import may_use
from rapport.errors import NotFoundError, ValidationError
from rapport.ingestion.service import bucket_row
from rapport.models.features import feature_needs, feature_values
from rapport.models.score import ScoringModel
from rapport.models.spec import ModelSpec, score_series
from rapport.models.train import Dataset, Fitted
from rapport.privacy import pii
from rapport.profiles.computed import Bucket, bucket_of
from rapport.rules import Node, evaluate, evaluate_where, parse
from rapport.segments.service import MembershipWriter, Touched
from rapport.segments.stored import Needs, ProfileData, StoredContext, load, needs
from rapport.storage.base import Conn
from rapport.storage.sql import identity as identity_sql
from rapport.storage.sql import models as models_sql
from rapport.storage.sql import profiles as profiles_sql
from rapport.types import Json, JsonObject, Millis
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import WorkspaceRuntime

CHUNK = 500
"""Profiles read (and scores written) per step."""

_SPECS: dict[tuple[str, int], dict[str, ModelSpec]] = {}
_MODELS: dict[tuple[str, str, int], ScoringModel] = {}


def specs(rt: WorkspaceRuntime) -> Mapping[str, ModelSpec]:
    """Every `Model` resource of the workspace, compiled (cached per definitions generation)."""
    key = (rt.id, rt.generation)
    found = _SPECS.get(key)
    if found is None:
        if len(_SPECS) > 64:
            _SPECS.clear()
        found = _SPECS[key] = {name: ModelSpec.from_spec(spec) for name, spec in rt.specs.get("Model", {}).items()}
    return found


def model_spec(rt: WorkspaceRuntime, name: str) -> ModelSpec:
    found = specs(rt).get(name)
    if found is None:
        raise NotFoundError(f"no model {name!r}", code="model_not_found")
    return found


# --- serving -------------------------------------------------------------------------------------


def scoring_models(conn: Conn, rt: WorkspaceRuntime) -> Mapping[str, ScoringModel]:
    """The newest trained version of each `Model` resource of the workspace, ready to score.

    One small query per call; parameters are parsed once per stored version."""
    out: dict[str, ScoringModel] = {}
    live = rt.specs.get("Model", {})
    for name, number in models_sql.latest(conn, rt.id):
        if name not in live:
            continue
        key = (rt.id, str(name), int(number))
        model = _MODELS.get(key)
        if model is None:
            row = models_sql.version(conn, rt.id, str(name), int(number))
            if row is None:
                continue
            if len(_MODELS) > 1024:
                _MODELS.clear()
            model = _MODELS[key] = ScoringModel.from_json(str(name), int(number), orjson.loads(row[7]))
        out[str(name)] = model
    return out


def read_features(conn: Conn, rt: WorkspaceRuntime, features: Sequence[str], profile_ids: Sequence[str],
                  at: Millis) -> dict[str, dict[str, float | None]]:
    """Each profile's feature values as of ``at`` (computed traits read from their buckets)."""
    data = load(conn, rt, feature_needs(features, rt), profile_ids)
    return {pid: feature_values(features, rt.traits, StoredContext(rt, data[pid], at)) for pid in profile_ids}


# --- training ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What training reads: the dataset, its instants and how the population was chosen."""

    dataset: Dataset
    cutoff: Millis
    now: Millis
    existing: int
    """Live profiles that existed at the cutoff."""


def not_ready(conn: Conn, rt: WorkspaceRuntime, spec: ModelSpec) -> list[str]:
    """The features whose series are still being backfilled from stored events (they would read short)."""
    live = {str(r[0]) for r in profiles_sql.series_states(conn, rt.id) if r[2] == "live"}
    out = []
    for name in spec.features:
        defn = rt.traits.get(name)
        if defn is not None and any(s.id in rt.series and s.id not in live for s in defn.all_series()):
            out.append(name)
    return out


def snapshot(conn: Conn, rt: WorkspaceRuntime, keyring: Keyring, spec: ModelSpec, now: Millis) -> Snapshot:
    """The point-in-time training set of ``spec`` at ``now`` (see the module docstring)."""
    pending = not_ready(conn, rt, spec)
    if pending:
        raise ValidationError(f"model {spec.name!r} cannot be trained yet: computed trait(s) {', '.join(pending)}"
                              " are still being backfilled", code="features_not_ready",
                              details=[{"features": pending}])
    purpose = rt.catalog.purposes.get(spec.purpose)
    if purpose is None:
        raise ValidationError(f"model {spec.name!r}: unknown consent purpose {spec.purpose!r}", code="invalid_model")
    cutoff = now - spec.target.within_ms
    audience = _audience(spec)
    wanted = _needs(rt, spec, audience)
    existing = models_sql.profiles_at(conn, rt.id, cutoff)
    ids: list[str] = []
    rows: list[tuple[float | None, ...]] = []
    for start in range(0, len(existing), CHUNK):
        chunk = existing[start:start + CHUNK]
        data = load(conn, rt, wanted, chunk)
        for pid in chunk:
            d = data[pid]
            if not (may_use(d.ledger, purpose, cutoff).allowed and may_use(d.ledger, purpose, now).allowed):
                continue
            ctx = StoredContext(rt, d, cutoff)
            if audience is not None and not evaluate(audience, ctx):
                continue
            values = feature_values(spec.features, rt.traits, ctx)
            ids.append(pid)
            rows.append(tuple(values[f] for f in spec.features))
    happened = _happened(conn, rt, keyring, spec, cutoff, now)
    labels = tuple(int((pid in happened) != spec.target.negate) for pid in ids)
    return Snapshot(Dataset(spec.features, tuple(ids), tuple(rows), labels), cutoff, now, len(existing))


def _audience(spec: ModelSpec) -> Node | None:
    return parse(spec.audience) if spec.audience else None


def _needs(rt: WorkspaceRuntime, spec: ModelSpec, audience: Node | None) -> Needs:
    base = feature_needs(spec.features, rt, consent=True)
    if audience is None:
        return base
    extra = needs(audience, rt)
    return Needs(base.traits | extra.traits, base.series | extra.series, base.distinct | extra.distinct, True,
                 extra.segments)


def _happened(conn: Conn, rt: WorkspaceRuntime, keyring: Keyring, spec: ModelSpec, after: Millis,
              upto: Millis) -> set[str]:
    """The live profiles with a target event (matching ``where``) whose event time is in ``(after, upto]``."""
    rows = models_sql.target_events(conn, rt.id, spec.target.event, after, upto)
    where = parse(spec.target.where) if spec.target.where else None
    if where is None:
        return {str(r[0]) for r in rows}
    wrapped = identity_sql.profile_rows(conn, rt.id, sorted({str(r[1]) for r in rows}))
    out: set[str] = set()
    for profile_id, origin, ts, body in rows:
        if str(profile_id) in out or str(origin) not in wrapped:
            continue
        cipher = keyring.profile_cipher(rt.id, rt.wrapped_key, str(origin), bytes(wrapped[str(origin)][3]))
        message = pii.decrypt_fields(orjson.loads(body), cipher.decrypt)
        props = message.get("properties")
        if evaluate_where(where, props if isinstance(props, dict) else {}, int(ts)):
            out.add(str(profile_id))
    return out


STORED = [0]
"""Versions stored by this process: readers caching the catalog (``decisions.service``) read it again when it
moves (other processes' versions are seen when such a cache expires)."""


def store(conn: Conn, rt: WorkspaceRuntime, spec: ModelSpec, fitted: Fitted, cutoff: Millis, now: Millis
          ) -> ScoringModel:
    """Record a trained model as the next version of ``spec.name``; returns it with its version number."""
    STORED[0] += 1
    version = models_sql.next_version(conn, rt.id, spec.name)
    model = replace(fitted.model, version=version)
    resource = rt.specs.get("Model", {}).get(spec.name, {})
    models_sql.insert_version(
        conn, rt.id, spec.name, version, rt.versions.get(("Model", spec.name), 0), "ready", now, cutoff,
        orjson.dumps(resource).decode(), orjson.dumps(model.to_json()).decode(),
        orjson.dumps(fitted.metrics.to_json()).decode())
    return model


def version_json(row: Sequence[object]) -> JsonObject:
    """A catalog row (``models_sql.VERSION_COLUMNS``) as the API shows it."""
    from rapport.clock import to_iso

    name, number, resource_version, status, trained_at, cutoff, spec, parameters, metrics, scored_at, scored = row
    params: JsonObject = orjson.loads(str(parameters))
    return {"name": name, "version": int(str(number)), "resource_version": int(str(resource_version)),
            "status": status, "trained_at": to_iso(int(str(trained_at))), "cutoff": to_iso(int(str(cutoff))),
            "metrics": orjson.loads(str(metrics)), "spec": orjson.loads(str(spec)),
            "parameters": params, "scored_at": None if scored_at is None else to_iso(int(str(scored_at))),
            "scored": scored}


# --- writing scores back -------------------------------------------------------------------------


def score_chunk(conn: Conn, rt: WorkspaceRuntime, clock: Clock, model: ScoringModel, spec: ModelSpec,
                profile_ids: Sequence[str], at: Millis) -> int:
    """Score ``profile_ids`` as of ``at`` and write their scores back (an empty score for those without the
    purpose or out of the audience that held one); re-evaluates the segments that read the scores.
    Returns how many were scored."""
    purpose = rt.catalog.purposes.get(spec.purpose)
    if purpose is None:
        return 0
    sid = score_series(spec.name).id
    audience = _audience(spec)
    wanted = _needs(rt, replace(spec, features=model.features), audience)
    data = load(conn, rt, wanted, profile_ids)
    written: list[tuple[object, ...]] = []
    dropped: list[str] = []
    for pid in profile_ids:
        d: ProfileData = data[pid]
        ctx = StoredContext(rt, d, at)
        if not may_use(d.ledger, purpose, at).allowed or (audience is not None and not evaluate(audience, ctx)):
            dropped.append(pid)
            continue
        scored = model.score(feature_values(model.features, rt.traits, ctx))
        written.append(bucket_row(rt.id, pid, sid, score_bucket(scored.probability, at, model.version)))
    if dropped:
        held = models_sql.latest_scores(conn, rt.id, sid, dropped)
        written += [bucket_row(rt.id, pid, sid, score_bucket(None, at, model.version))
                    for pid in dropped if held.get(pid) is not None]
    if written:
        profiles_sql.upsert_buckets(conn, written)
        MembershipWriter(conn, rt, clock).update({str(r[1]): Touched(series={sid}) for r in written}, at)
    return len(profile_ids) - len(dropped)


def score_bucket(probability: float | None, at: Millis, version: int) -> Bucket:
    """One score as a bucket of the model's series: its value is the calibrated probability (None: no score)."""
    value: Json = None if probability is None else probability
    encoded = None if value is None else orjson.dumps(value).decode()
    number = probability is not None
    return Bucket(bucket_of(at), 1, 1 if number else 0, probability or 0.0, probability, probability, at, version,
                  encoded, at, version, encoded)
