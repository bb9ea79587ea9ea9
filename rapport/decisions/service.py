"""Decisions for a request: find the person, load what the placements read in one snapshot, decide, record.

Reads happen in one read transaction: the identifier's profile, the traits, computed-trait buckets, consent
ledger and segment stays the placements read (``rapport.segments.stored``), impressions of capped blocks, the
products the person bought or returned (only when a block promotes products) and stored experiment assignments.
A first assignment in an experiment is written synchronously (``rapport.experiments.sticky``: the variant must be
stored before it is shown). Impressions and exposures are analytics records: they are queued for the writer's
group commit and the response does not wait for that commit.

Nobody is created by a decision: an unknown identifier gets what a person without data and without consent gets
(the defaults, by consent fallback where the purpose needs consent), and is assigned to no experiment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import orjson

from rapport.consent.decide import current_state
from rapport.content.compile import Library, Placement, library, locale_chain
from rapport.decisions.engine import BlockContext, Decision, Person, ScoringModel, decide, experiment_gate
from rapport.errors import NotFoundError, Overloaded, ValidationError
from rapport.experiments import sticky
from rapport.experiments.assign import Assignment, GlobalHoldout
from rapport.identity.normalize import normalize
from rapport.privacy import pii
from rapport.profiles.computed import evaluate as evaluate_trait
from rapport.rules import EventFn, Path
from rapport.segments.stored import Needs, ProfileData, StoredContext, load
from rapport.storage.base import Conn
from rapport.storage.sql import decisions as sql
from rapport.storage.sql import experiments as experiments_sql
from rapport.storage.sql import exposures as exposures_sql
from rapport.storage.sql import identity as identity_sql
from rapport.types import Json, JsonObject, Millis
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import WorkspaceRuntime

if TYPE_CHECKING:
    from rapport.core import Rapport

log = logging.getLogger("rapport.decisions")

IdType = Literal["user_id", "anonymous_id", "profile_id"]
ID_TYPES: tuple[IdType, ...] = ("user_id", "anonymous_id", "profile_id")
MAX_PLACEMENTS = 20
MAX_CONTEXT_BYTES = 8 * 1024
REQUEST_FIELDS = ("user_id", "anonymous_id", "profile_id", "placements", "context", "locale")


@dataclass(frozen=True, slots=True)
class DecideRequest:
    """A decision request: who (``id_type``/``id_value``), which placements, the request context and locale."""

    id_type: IdType
    id_value: str
    placements: tuple[str, ...]
    context: Mapping[str, Json] = field(default_factory=dict)
    locale: str | None = None


def parse_request(body: Json, *, admin: bool) -> DecideRequest:
    """The request in ``body``; a write-key caller (not ``admin``) may name a person only by ``user_id`` or
    ``anonymous_id``. Raises ``ValidationError`` naming what is wrong."""
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object such as {\"user_id\": \"u1\", \"placements\": "
                              "[\"home_hero\"]}", code="invalid_request")
    unknown = sorted(set(body) - set(REQUEST_FIELDS) - {"writeKey"})
    if unknown:
        raise ValidationError(f"unknown field(s) {', '.join(map(repr, unknown))}; expected "
                              f"{', '.join(REQUEST_FIELDS)}", code="invalid_request")
    given = [key for key in ID_TYPES if body.get(key) is not None]
    allowed = ID_TYPES if admin else ID_TYPES[:2]
    if "profile_id" in given and not admin:
        raise ValidationError("a write key names a person by 'user_id' or 'anonymous_id'; 'profile_id' needs an "
                              "admin token", code="invalid_request", details=[{"field": "profile_id"}])
    if len(given) != 1:
        raise ValidationError(f"give exactly one of {', '.join(allowed)}", code="invalid_request")
    id_type = given[0]
    value = body[id_type]
    if isinstance(value, int | float) and not isinstance(value, bool) and id_type != "profile_id":
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > 512:
        raise ValidationError(f"{id_type!r} must be a non-empty string", code="invalid_request",
                              details=[{"field": id_type}])
    placements = body.get("placements")
    if not (isinstance(placements, list) and placements and all(isinstance(p, str) for p in placements)):
        raise ValidationError("'placements' must be a non-empty list of placement names", code="invalid_request",
                              details=[{"field": "placements"}])
    if len(placements) > MAX_PLACEMENTS:
        raise ValidationError(f"at most {MAX_PLACEMENTS} placements per request", code="invalid_request",
                              details=[{"field": "placements"}])
    context = body.get("context", {})
    if context is None:
        context = {}
    if not isinstance(context, dict):
        raise ValidationError("'context' must be an object, e.g. {\"page\": \"home\"}", code="invalid_request",
                              details=[{"field": "context"}])
    if len(orjson.dumps(context)) > MAX_CONTEXT_BYTES:
        raise ValidationError(f"'context' is over {MAX_CONTEXT_BYTES} bytes", code="invalid_request",
                              details=[{"field": "context"}])
    locale = body.get("locale")
    if locale is not None and not (isinstance(locale, str) and 0 < len(locale) <= 35):
        raise ValidationError("'locale' must be a language tag such as 'de-AT'", code="invalid_request",
                              details=[{"field": "locale"}])
    return DecideRequest(id_type, value.strip(), tuple(dict.fromkeys(placements)), context, locale)


def placements_of(lib: Library, names: Sequence[str]) -> list[Placement]:
    """The compiled placements named; an unknown name is a ``NotFoundError`` listing the known ones."""
    missing = [name for name in names if name not in lib.placements]
    if missing:
        known = ", ".join(sorted(lib.placements)) or "none yet"
        raise NotFoundError(f"unknown placement(s) {', '.join(map(repr, missing))}; known: {known}",
                            code="placement_not_found", details=[{"placement": name} for name in missing])
    return [lib.placements[name] for name in names]


@dataclass(frozen=True, slots=True)
class DecisionContext:
    """The rules' ``EvalContext``: the stored profile plus ``context.*`` from the request."""

    stored: StoredContext
    request: Mapping[str, Json]
    computed: dict[str, tuple[bool, object]] = field(default_factory=dict)
    """Computed values already evaluated: several rules, models and blocks of one request read the same ones."""

    @property
    def now_ms(self) -> Millis:
        return self.stored.now_ms

    def lookup(self, path: Path) -> tuple[bool, object]:
        if path.root == "computed" and len(path.parts) == 1:
            hit = self.computed.get(path.parts[0])
            if hit is None:
                hit = self.computed[path.parts[0]] = self.stored.lookup(path)
            return hit
        if path.root != "context":
            return self.stored.lookup(path)
        current: object = self.request
        for part in path.parts:
            if not isinstance(current, dict) or part not in current:
                return False, None
            current = current[part]
        return True, current

    def event_function(self, fn: EventFn) -> object | None:
        return self.stored.event_function(fn)

    def in_segment(self, name: str) -> bool:
        return self.stored.in_segment(name)


@dataclass(frozen=True, slots=True)
class Loaded:
    """A person as the engine needs them, with their stored assignments (experiment → (assignment, unit))."""

    profile_id: str | None
    person: Person
    assignments: Mapping[str, tuple[Assignment, str]] = field(default_factory=dict)


def find_profile(conn: Conn, ws: str, id_type: IdType, value: str) -> str | None:
    """The live profile holding the identifier, or ``None`` (nothing is created)."""
    if id_type == "profile_id":
        return identity_sql.live_root(conn, ws, value)
    ident = normalize(id_type, value)
    if ident is None:
        return None
    return identity_sql.owners(conn, ws, [(id_type, ident.value)]).get((id_type, ident.value))


def load_person(conn: Conn, rt: WorkspaceRuntime, keyring: Keyring, placements: Sequence[Placement],
                profile_id: str | None, context: Mapping[str, Json], locale: str | None, now: Millis) -> Loaded:
    """Everything ``placements`` read of the profile (``None``: an unknown person) at ``now``."""
    empty = ProfileData()
    if profile_id is None:
        rules = DecisionContext(StoredContext(rt, empty, now), context)
        allowed = _allowed(rt, empty, now)
        render = BlockContext(consent={p: p in allowed for p in rt.catalog.purposes}, request=context,
                              locale=locale or "")
        return Loaded(None, Person(rules, render, allowed, known=False))
    wanted = _needs(placements)
    data = load(conn, rt, Needs(series=wanted.series, distinct=wanted.distinct, consent=True,
                                segments=wanted.segments), [profile_id])[profile_id]
    names = sorted(wanted.traits | frozenset().union(*(p.render_traits for p in placements)))
    raw: dict[str, Json] = {}
    shown: dict[str, Json] = {}
    printed = frozenset().union(*(p.render_traits for p in placements))
    for name, value, key_profile in sql.traits(conn, rt.id, profile_id, names):
        decoded = orjson.loads(value)
        raw[name] = decoded
        if name in printed:
            shown[name] = _opened(conn, rt, keyring, str(key_profile), decoded)
    data = ProfileData(raw, data.series, data.ledger, data.stays)
    stored = StoredContext(rt, data, now)
    allowed = _allowed(rt, data, now)
    computed = {name: evaluate_trait(rt.traits[name], data.series, now)
                for p in placements for name in p.render_computed
                if name in rt.traits and not _sealed(rt, name)}
    segments = tuple(sorted({s.segment for s in data.stays if s.covers(now)}))
    render = BlockContext(traits=shown, computed=computed, consent={p: p in allowed for p in rt.catalog.purposes},
                          segments=segments, request=context, locale=locale or "")
    person = Person(DecisionContext(stored, context), render, allowed, True,
                    _impressions(conn, rt, placements, profile_id, now), _owned(conn, rt, placements, profile_id),
                    rt.traits)
    assignments: dict[str, tuple[Assignment, str]] = {}
    for placement in placements:
        for experiment in placement.experiments:
            row = experiments_sql.stored(conn, rt.id, profile_id, experiment.name)
            if row is not None:
                reason = sticky.REASONS.get(str(row[2]), "excluded")
                assignments[experiment.name] = Assignment(int(row[1]), row[0], reason), str(row[3])
    return Loaded(profile_id, person, assignments)


def _needs(placements: Sequence[Placement]) -> Needs:
    return Needs(traits=frozenset().union(*(p.needs.traits for p in placements)),
                 series=frozenset().union(*(p.needs.series for p in placements)),
                 distinct=frozenset().union(*(p.needs.distinct for p in placements)), consent=True,
                 segments=frozenset().union(*(p.needs.segments for p in placements)))


def _allowed(rt: WorkspaceRuntime, data: ProfileData, now: Millis) -> frozenset[str]:
    return frozenset(name for name, d in current_state(list(data.ledger), rt.catalog, now).items() if d.allowed)


def _sealed(rt: WorkspaceRuntime, name: str) -> bool:
    """Whether computed trait ``name`` keeps personal values sealed (not printable without opening)."""
    defn = rt.traits[name]
    return any(rt.series[s.id].personal for s in defn.all_series() if s.id in rt.series)


def _opened(conn: Conn, rt: WorkspaceRuntime, keyring: Keyring, key_profile: str, value: Json) -> Json:
    """A stored trait value with its personal data decrypted (for rendering only)."""
    if not (pii.is_marker(value) or isinstance(value, dict | list)):
        return value
    cipher = keyring.cached_cipher(rt.id, key_profile)
    if cipher is None:
        row = identity_sql.profile_rows(conn, rt.id, [key_profile]).get(key_profile)
        if row is None:
            return None
        cipher = keyring.profile_cipher(rt.id, rt.wrapped_key, key_profile, bytes(row[3]))
    if pii.is_marker(value):
        return pii.decrypt_value(value, cipher.decrypt)
    return pii.decrypt_fields({"v": value}, cipher.decrypt)["v"]


def _impressions(conn: Conn, rt: WorkspaceRuntime, placements: Sequence[Placement], profile_id: str,
                 now: Millis) -> dict[str, list[Millis]]:
    capped = sorted(frozenset().union(*(p.capped for p in placements)))
    if not capped:
        return {}
    lib = library(rt)
    longest = max(cap.per_ms for cap in (lib.blocks[name].cap for name in capped) if cap is not None)
    out: dict[str, list[Millis]] = {}
    for block, at in sql.impressions(conn, rt.id, profile_id, capped, now - longest):
        out.setdefault(str(block), []).append(int(at))
    return out


def _owned(conn: Conn, rt: WorkspaceRuntime, placements: Sequence[Placement], profile_id: str) -> frozenset[str]:
    if not any(p.reads_products for p in placements):
        return frozenset()
    found: set[str] = set()
    for (body,) in sql.owning_event_bodies(conn, rt.id, profile_id):
        properties = orjson.loads(body).get("properties")
        if not isinstance(properties, dict):
            continue
        products = properties.get("products")
        items = [properties, *(products if isinstance(products, list) else [])]
        for item in items:
            product = item.get("product_id") if isinstance(item, dict) else None
            if isinstance(product, str | int) and not isinstance(product, bool):
                found.add(str(product))
    return frozenset(found)


def global_holdout(rt: WorkspaceRuntime) -> GlobalHoldout | None:
    """The workspace's global holdout (setting ``global_holdout: {salt, percent}``), if it has one."""
    return rt.settings.holdout()


def to_assign(loaded: Loaded, placements: Sequence[Placement]) -> list[tuple[Placement, str]]:
    """(placement, experiment) pairs the person is to be assigned in and has no stored assignment for yet."""
    out = []
    for placement in placements:
        if placement.purpose not in loaded.person.allowed:
            continue
        for experiment in placement.experiments:
            if experiment.name not in loaded.assignments and experiment_gate(experiment, loaded.person) is None:
                out.append((placement, experiment.name))
    return out


def assign(conn: Conn, rt: WorkspaceRuntime, profile_id: str, pending: Sequence[tuple[Placement, str]],
           now: Millis) -> dict[str, tuple[Assignment, str]]:
    """Store (or read back) the person's assignment in each pending experiment; experiment → (assignment, unit)."""
    holdout = global_holdout(rt)
    out: dict[str, tuple[Assignment, str]] = {}
    for placement, name in pending:
        experiment = next(e for e in placement.experiments if e.name == name)
        got = sticky.assignment(conn, rt.id, name, experiment.salt, profile_id, experiment.variants,
                                holdout_percent=experiment.holdout, traffic_percent=experiment.traffic,
                                global_holdout=holdout, now=now)
        row = experiments_sql.stored(conn, rt.id, profile_id, name)
        out[name] = got, str(row[3]) if row is not None else profile_id
    return out


def decide_loaded(loaded: Loaded, placements: Sequence[Placement], lib: Library, *, now: Millis,
                  locale: str | None = None, models: Mapping[str, ScoringModel] | None = None) -> list[Decision]:
    """The decision of each placement for a loaded person (pure: what a benchmark times in-process). A ``Loaded``
    serves one request: its rules context keeps the computed values it has evaluated."""
    chain = locale_chain(locale)
    assignments = {name: a for name, (a, _) in loaded.assignments.items()}
    return [decide(p, lib.blocks, loaded.person, now=now, locale_chain=chain, models=models,
                   assignments=assignments) for p in placements]


Impression = tuple[str, str, str, Millis]
"""(profile_id, block, placement, at)."""
ExposureRow = tuple[str, str, str | None, str, str, Millis]
"""(unit, experiment, variant, reason, source, at) as ``exposures.record_many`` takes them."""


def records(loaded: Loaded, placements: Sequence[Placement], lib: Library, decisions: Sequence[Decision],
            now: Millis) -> tuple[list[Impression], list[ExposureRow]]:
    """The impressions (of capped blocks) and experiment exposures the decisions leave."""
    if loaded.profile_id is None:
        return [], []
    impressions: list[Impression] = [(loaded.profile_id, d.block, d.placement, now) for d in decisions
                   if d.block is not None and lib.blocks[d.block].cap is not None]
    exposures: list[ExposureRow] = []
    for decision in decisions:
        exposure = decision.exposure
        if exposure is None or exposure.reason == "excluded" or exposure.experiment not in loaded.assignments:
            continue
        unit = loaded.assignments[exposure.experiment][1]
        exposures.append((unit, exposure.experiment, exposure.variant, exposure.reason,
                          f"placement:{decision.placement}", now))
    return impressions, exposures


def scoring_models(conn: Conn, rt: WorkspaceRuntime, placements: Sequence[Placement]) -> Mapping[str, ScoringModel]:
    """The latest trained version of each model the placements rank with (``rapport.models.service``)."""
    if not any(p.models for p in placements):
        return {}
    # Imported on use: only workspaces that rank offers need the model store.
    from rapport.models import service as models_service

    return models_service.scoring_models(conn, rt)


def decide_request(rapport: Rapport, ws: str, request: DecideRequest, *, full: bool) -> JsonObject:
    """Decide every placement of ``request``; the JSON response (``full``: the admin view)."""
    from rapport.types import WorkspaceId

    rt = rapport.runtime(WorkspaceId(ws))
    lib = library(rt)
    placements = placements_of(lib, request.placements)
    now = rapport.clock.now_ms()

    def read(conn: Conn) -> tuple[Loaded, Mapping[str, ScoringModel]]:
        pid = find_profile(conn, rt.id, request.id_type, request.id_value)
        if pid is None and request.id_type == "profile_id":
            raise NotFoundError(f"no profile {request.id_value!r}", code="profile_not_found")
        return (load_person(conn, rt, rapport.keyring, placements, pid, request.context, request.locale, now),
                scoring_models(conn, rt, placements))

    loaded, models = rapport.db.read(read)
    pending = to_assign(loaded, placements)
    if pending and loaded.profile_id is not None:
        pid = loaded.profile_id
        made = rapport.db.write(lambda conn: assign(conn, rt, pid, pending, now))
        loaded = Loaded(loaded.profile_id, loaded.person, {**loaded.assignments, **made})
    decisions = decide_loaded(loaded, placements, lib, now=now, locale=request.locale, models=models)
    record(rapport, rt.id, *records(loaded, placements, lib, decisions, now))
    out: JsonObject = {"decisions": {d.placement: d.to_json(full=full) for d in decisions}}
    if full:
        out["profile_id"] = loaded.profile_id
    return out


def record(rapport: Rapport, ws: str, impressions: Sequence[Impression], exposures: Sequence[ExposureRow]) -> None:
    """Queue impressions and exposures for the writer's group commit without waiting for it; when the writer is
    overloaded they are dropped (logged) rather than failing the decision."""
    if not impressions and not exposures:
        return

    def job(conn: Conn) -> None:
        sql.record_impressions(conn, ws, impressions)
        exposures_sql.record_many(conn, ws, exposures)

    try:
        future = rapport.db.submit(job, weight=max(1, len(impressions) + len(exposures)))
    except Overloaded:
        log.warning("writer overloaded: %d impression(s) and %d exposure(s) not recorded", len(impressions),
                    len(exposures))
        return
    future.add_done_callback(_log_failure)


def _log_failure(future: Future[None]) -> None:
    error = future.exception()
    if error is not None:
        log.error("decision records were not stored: %s", error)
