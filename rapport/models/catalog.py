"""Operating one workspace's models for the API and the CLI: catalog, train, score."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rapport.clock import to_iso
from rapport.errors import NotFoundError
from rapport.models import service
from rapport.models.score import ScoringModel
from rapport.models.spec import ModelSpec
from rapport.models.train import fit
from rapport.storage.base import Conn
from rapport.storage.sql import models as models_sql
from rapport.storage.sql import workspaces as ws_sql
from rapport.types import JsonObject, WorkspaceId

if TYPE_CHECKING:
    from rapport.core import Rapport

Progress = Callable[[str, int, int], None]
"""``(stage, done, total)``: how far a long operation is, for a progress bar."""


def _quiet(_stage: str, _done: int, _total: int) -> None:
    return None


class Models:
    """One workspace's models, read and operated through a ``Rapport``."""

    def __init__(self, rapport: Rapport, ws: WorkspaceId) -> None:
        self.rapport = rapport
        self.ws = ws
        self.rt = rapport.runtime(ws)

    def _spec(self, name: str) -> ModelSpec:
        return service.model_spec(self.rt, name)

    def catalog(self) -> list[JsonObject]:
        """Every Model resource with its latest version's metrics."""
        rows = self.rapport.db.read(lambda c: models_sql.versions(c, self.ws))
        latest: dict[str, JsonObject] = {}
        counts: dict[str, int] = {}
        for row in rows:
            counts[str(row[0])] = counts.get(str(row[0]), 0) + 1
            latest.setdefault(str(row[0]), service.version_json(row))
        out = []
        for name, spec in sorted(service.specs(self.rt).items()):
            last = latest.get(name)
            out.append({
                "name": name, "description": spec.description, "target": self.rt.specs["Model"][name]["target"],
                "features": list(spec.features), "algorithm": spec.algorithm, "purpose": spec.purpose,
                "write_to": spec.write_to, "versions": counts.get(name, 0),
                "latest": None if last is None else {k: last[k] for k in (
                    "version", "trained_at", "cutoff", "metrics", "scored_at", "scored")},
            })
        return out

    def describe(self, name: str) -> JsonObject:
        """One model: its resource and every trained version with metrics and parameters."""
        spec = self._spec(name)
        rows = self.rapport.db.read(lambda c: models_sql.versions(c, self.ws, name))
        return {"name": name, "resource": self.rt.specs["Model"][name], "write_to": spec.write_to,
                "versions": [service.version_json(r) for r in rows]}

    def train(self, name: str, actor: str, progress: Progress = _quiet, *, write_back: bool = True) -> JsonObject:
        """Train a new version on a point-in-time snapshot, store it, and (with ``write_to``) score everyone."""
        spec = self._spec(name)
        now = self.rapport.clock.now_ms()
        progress("snapshot", 0, 1)
        snap = self.rapport.db.read(lambda c: service.snapshot(c, self.rt, self.rapport.keyring, spec, now))
        progress("snapshot", 1, 1)
        progress("fit", 0, 1)
        fitted = fit(snap.dataset, name, 0, seed=name)
        progress("fit", 1, 1)

        def record(conn: Conn) -> ScoringModel:
            model = service.store(conn, self.rt, spec, fitted, snap.cutoff, now)
            ws_sql.audit(conn, self.ws, actor, "models.train", f"Model/{name}",
                         {"version": model.version, "metrics": fitted.metrics.to_json()}, now)
            return model

        model = self.rapport.db.write(record)
        out: JsonObject = {
            "name": name, "version": model.version, "trained_at": to_iso(now), "cutoff": to_iso(snap.cutoff),
            "population": {"existing_at_cutoff": snap.existing, "trained_on": len(snap.dataset.ids),
                           "positives": sum(snap.dataset.labels)},
            "metrics": fitted.metrics.to_json(),
            "coefficients": dict(zip(model.features, model.coefficients, strict=True)),
            "calibration": model.calibration.method,
        }
        if write_back and spec.write_to:
            out["scored"] = self._score(spec, model, actor, progress)
        return out

    def score(self, name: str, actor: str, progress: Progress = _quiet) -> JsonObject:
        """Score every live profile with the latest version and write the scores back to ``write_to``."""
        spec = self._spec(name)
        model = self.rapport.db.read(lambda c: service.scoring_models(c, self.rt)).get(name)
        if model is None:
            raise NotFoundError(f"model {name!r} has no trained version; run 'rapport models train {name}'",
                                code="model_not_trained")
        if not spec.write_to:
            return {"name": name, "version": model.version, "scored": 0, "write_to": None}
        return {"name": name, "version": model.version, "write_to": spec.write_to,
                "scored": self._score(spec, model, actor, progress)}

    def _score(self, spec: ModelSpec, model: ScoringModel, actor: str, progress: Progress) -> int:
        now = self.rapport.clock.now_ms()
        everyone = self.rapport.db.read(lambda c: models_sql.profiles_at(c, self.ws, None))
        clock, rt = self.rapport.clock, self.rt
        scored = 0
        progress("score", 0, len(everyone))

        def step(ids: list[str]) -> Callable[[Conn], int]:
            return lambda conn: service.score_chunk(conn, rt, clock, model, spec, ids, now)

        for start in range(0, len(everyone), service.CHUNK):
            chunk = everyone[start:start + service.CHUNK]
            scored += self.rapport.db.write(step(chunk))
            progress("score", start + len(chunk), len(everyone))

        def finish(conn: Conn) -> None:
            models_sql.mark_scored(conn, self.ws, spec.name, model.version, now, scored)
            ws_sql.audit(conn, self.ws, actor, "models.score", f"Model/{spec.name}",
                         {"version": model.version, "scored": scored}, now)

        self.rapport.db.write(finish)
        return scored
