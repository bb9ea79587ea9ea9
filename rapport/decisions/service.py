"""Decisions for a request: find the person, load what the placements read in one snapshot, decide, record.

Reads happen in one read transaction: the identifier's profile with its consent (one statement, from the ledger's
index), then, for the placements whose purpose the person allows only (the others fall back without their data),
the traits they read, one summary row per computed-trait series and window (``storage.sql.profiles.summaries``;
buckets only for what a summary cannot answer), segment stays (``rapport.segments.stored``), impressions of capped
blocks,
the products the person bought or returned (only when a block promotes products, from a bounded number of the
newest events) and the stored assignments of their experiments (one query). Personal trait values are decrypted
only when a chosen block prints them (``engine.Opened``).
A first assignment in an experiment is written synchronously (``rapport.experiments.sticky``: the variant must be
stored before it is shown). Impressions and exposures are analytics records: they are queued for the writer's
group commit and the response does not wait for that commit.

Nobody is created by a decision: an unknown identifier gets what a person without data and without consent gets
(the defaults, by consent fallback where the purpose needs consent), and is assigned to no experiment. A write-key
caller names a ``user_id`` only with its ``user_hash`` (``rapport.workspaces.verification``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Final, Literal, NamedTuple

import orjson

from rapport.consent.decide import ConsentRow, allowed_purposes
from rapport.content.compile import Library, Placement, library, locale_chain, union
from rapport.decisions.engine import BlockContext, Decision, Opened, Person, ScoringModel, decide, experiment_gate
from rapport.errors import NotFoundError, Overloaded, ValidationError
from rapport.experiments import sticky
from rapport.experiments.assign import Assignment, place
from rapport.identity.normalize import normalize
from rapport.privacy import pii
from rapport.privacy.crypto import Cipher
from rapport.profiles.computed import SummaryKey
from rapport.rules import EventFn, Path
from rapport.segments.stored import Needs, ProfileData, StoredContext, load
from rapport.storage.base import Conn
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import decisions as sql
from rapport.storage.sql import exposures as exposures_sql
from rapport.storage.sql import identity as identity_sql
from rapport.storage.sql import profiles as profiles_sql
from rapport.types import Json, JsonObject, Millis, WorkspaceId
from rapport.workspaces import verification
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import WorkspaceRuntime

if TYPE_CHECKING:
    from rapport.core import Rapport

log = logging.getLogger("rapport.decisions")

IdType = Literal["user_id", "anonymous_id", "profile_id"]
ID_TYPES: tuple[IdType, ...] = ("user_id", "anonymous_id", "profile_id")
MAX_PLACEMENTS = 20
MAX_CONTEXT_BYTES = 8 * 1024
OWNED_LIMIT = 200
"""Newest bought/refunded/returned events read for the products a person owns: a decision reads a bounded number
of rows however long the person's history."""
REQUEST_FIELDS = ("user_id", "anonymous_id", "profile_id", "placements", "context", "locale", "dry_run", "user_hash")
_KNOWN_FIELDS = frozenset({*REQUEST_FIELDS, "writeKey"})


_NO_CONTEXT: Final[Mapping[str, Json]] = MappingProxyType({})


class DecideRequest(NamedTuple):
    """A decision request: who (``id_type``/``id_value``), which placements, the request context and locale."""

    id_type: IdType
    id_value: str
    placements: tuple[str, ...]
    context: Mapping[str, Json] = _NO_CONTEXT
    locale: str | None = None
    dry_run: bool = False
    """A preview (admin only): nobody is assigned, no exposure or impression is recorded."""
    user_hash: str | None = None
    """Proof that the caller was given the ``user_id`` (``verify_identity``)."""


def parse_request(body: Json, *, admin: bool) -> DecideRequest:
    """The request in ``body``; a write-key caller (not ``admin``) may name a person only by ``user_id`` or
    ``anonymous_id``. Raises ``ValidationError`` naming what is wrong."""
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object such as {\"user_id\": \"u1\", \"placements\": "
                              "[\"home_hero\"]}", code="invalid_request")
    if not body.keys() <= _KNOWN_FIELDS:
        unknown = sorted(body.keys() - _KNOWN_FIELDS)
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
    if isinstance(value, str) and len(value) <= 512:
        value = value.strip()
    if not isinstance(value, str) or not value or len(value) > 512:
        raise ValidationError(f"{id_type!r} must be a non-empty string", code="invalid_request",
                              details=[{"field": id_type}])
    placements = body.get("placements")
    if not (isinstance(placements, list) and placements and {type(p) for p in placements} == {str}):
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
    if context and len(orjson.dumps(context)) > MAX_CONTEXT_BYTES:
        raise ValidationError(f"'context' is over {MAX_CONTEXT_BYTES} bytes", code="invalid_request",
                              details=[{"field": "context"}])
    locale = body.get("locale")
    if locale is not None and not (isinstance(locale, str) and 0 < len(locale) <= 35):
        raise ValidationError("'locale' must be a language tag such as 'de-AT'", code="invalid_request",
                              details=[{"field": "locale"}])
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ValidationError("'dry_run' must be true or false", code="invalid_request",
                              details=[{"field": "dry_run"}])
    if dry_run and not admin:
        raise ValidationError("'dry_run' needs an admin token", code="invalid_request",
                              details=[{"field": "dry_run"}])
    user_hash = body.get("user_hash")
    if user_hash is not None and not (isinstance(user_hash, str) and 0 < len(user_hash) <= 128):
        raise ValidationError("'user_hash' must be the hex HMAC-SHA256 of the user id", code="invalid_request",
                              details=[{"field": "user_hash"}])
    return DecideRequest(id_type, value, tuple(dict.fromkeys(placements)), context, locale, dry_run, user_hash)


def verify_identity(rapport: Rapport, rt: WorkspaceRuntime, request: DecideRequest) -> None:
    """Refuse a write-key request naming a ``user_id`` it cannot prove it was given (``rapport.workspaces
    .verification``)."""
    if request.id_type == "user_id" and not verification.verified(rapport.keyring, rt, request.id_value,
                                                                  request.user_hash, rapport.clock.now_ms()):
        raise verification.refused("its 'user_hash'")


def placements_of(lib: Library, names: Sequence[str], *, list_known: bool = True) -> list[Placement]:
    """The compiled placements named; an unknown name is a ``NotFoundError``, listing the known ones only when
    ``list_known`` (an admin caller: a write key is public and must not learn the workspace's placements)."""
    placements = lib.placements
    try:
        return [placements[name] for name in names]
    except KeyError:
        pass
    missing = [name for name in names if name not in placements]
    known = f"; known: {', '.join(sorted(placements)) or 'none yet'}" if list_known else ""
    raise NotFoundError(f"unknown placement(s) {', '.join(map(repr, missing))}{known}",
                        code="placement_not_found", details=[{"placement": name} for name in missing])


class DecisionContext:
    """The rules' ``EvalContext``: the stored profile plus ``context.*`` from the request. Serves one request: it
    keeps the computed values it has evaluated."""

    __slots__ = ("allowed", "computed", "request", "stored")

    def __init__(self, stored: StoredContext, request: Mapping[str, Json], allowed: frozenset[str] = frozenset()
                 ) -> None:
        self.stored = stored
        self.request = request
        self.allowed = allowed
        """The purposes the person allows at ``now_ms``: ``consent.*`` reads them."""
        self.computed: dict[str, tuple[bool, object]] = {}
        """Computed values already evaluated: several rules, models and blocks of one request read the same ones."""

    @property
    def now_ms(self) -> Millis:
        return self.stored.now_ms

    def lookup(self, path: Path) -> tuple[bool, object]:
        if path.root == "computed" and len(path.parts) == 1:
            name = path.parts[0]
            hit = self.computed.get(name)
            if hit is None:
                hit = self.computed[name] = self.stored.computed(name)
            return hit
        if path.root == "consent":
            known = len(path.parts) == 1 and path.parts[0] in self.stored.rt.catalog.purposes
            return (True, path.parts[0] in self.allowed) if known else (False, None)
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


_NO_ASSIGNMENTS: Final[Mapping[str, tuple[Assignment, str]]] = MappingProxyType({})


class Loaded(NamedTuple):
    """A person as the engine needs them, with their stored assignments (experiment → (assignment, unit))."""

    profile_id: str | None
    person: Person
    assignments: Mapping[str, tuple[Assignment, str]] = _NO_ASSIGNMENTS


def find_profile(conn: Conn, ws: str, id_type: IdType, value: str) -> str | None:
    """The live profile holding the identifier, or ``None`` (nothing is created)."""
    if id_type == "profile_id":
        return identity_sql.live_root(conn, ws, value)
    ident = normalize(id_type, value)
    if ident is None:
        return None
    return identity_sql.owners(conn, ws, [(id_type, ident.value)]).get((id_type, ident.value))


def find_with_consent(conn: Conn, ws: str, id_type: IdType, value: str) -> tuple[str | None, list[ConsentRow]]:
    """The live profile holding the identifier (``None``: nobody) and its consent ledger as deciding reads it, in
    one statement for a user or anonymous id."""
    if id_type == "profile_id":
        pid = identity_sql.live_root(conn, ws, value)
        if pid is None:
            return None, []
        return pid, [consent_sql.state_row(row) for row in consent_sql.states(conn, ws, [pid])]
    ident = normalize(id_type, value)
    if ident is None:
        return None, []
    rows = sql.owner_and_consent(conn, ws, id_type, ident.value)
    if not rows:
        return None, []
    # The rows' columns are already typed as ``ConsentRow`` on both backends (TEXT, BIGINT): sliced, not copied.
    return str(rows[0][0]), [row[1:] for row in rows if row[1] is not None]


def load_person(conn: Conn, rt: WorkspaceRuntime, keyring: Keyring, placements: Sequence[Placement],
                profile_id: str | None, context: Mapping[str, Json], locale: str | None, now: Millis,
                consent: Sequence[ConsentRow] | None = None) -> Loaded:
    """Everything ``placements`` read of the profile (``None``: an unknown person) at ``now``; ``consent``: its
    consent ledger rows when already read (``find_with_consent``).

    Computed values and event functions are read as one summary row per series (``storage.sql.profiles
    .summaries``), not bucket by bucket: a decision reads a bounded number of rows however long the history.
    Only what a summary cannot answer (distinct values, a property's first or last value) loads buckets."""
    if profile_id is None:
        allowed = allowed_purposes((), rt.catalog, now)
        rules = DecisionContext(StoredContext(rt, _NOBODY, now), context, allowed)
        render = BlockContext(consent=_consent_map(rt, allowed), request=context, locale=locale or "")
        return Loaded(None, Person(rules, render, allowed, known=False))
    if consent is None:
        consent = [consent_sql.state_row(row) for row in consent_sql.states(conn, rt.id, [profile_id])]
    allowed = allowed_purposes(consent, rt.catalog, now)
    # A placement whose purpose the person does not allow falls back without their data: only the placements
    # they allow are read for (nothing more than consent when they allow none).
    active = [p for p in placements if p.purpose in allowed]
    plan = _plan(rt, active)
    wanted = plan.needs
    summaries = (profiles_sql.summaries(conn, rt.id, profile_id, plan.summarized, now, wanted.fields)
                 if plan.summarized else {})
    data = _NOBODY
    if wanted.rows or wanted.segments:
        data = load(conn, rt, Needs(series=wanted.rows, distinct=wanted.distinct, segments=wanted.segments),
                    [profile_id])[profile_id]
    printed = plan.printed
    raw: dict[str, Json] = {}
    sealed: dict[str, Json] = {}
    key_profile = ""
    for name, value, owner in sql.traits(conn, rt.id, profile_id, plan.traits):
        decoded = raw[name] = orjson.loads(value)
        if name in printed:
            sealed[name] = decoded
            if pii.is_marker(decoded) or isinstance(decoded, dict | list):
                key_profile = str(owner)
    # The cipher is found now (it may need a read); values are decrypted only when a chosen block prints them.
    cipher = _cipher(conn, rt, keyring, key_profile) if key_profile else None
    shown = Opened(sealed, lambda value: _opened(cipher, value))
    data = ProfileData(raw, data.series, (), data.stays)
    rules = DecisionContext(StoredContext(rt, data, now, summaries), context, allowed)
    computed = {path.parts[0]: rules.lookup(path)[1] for path in plan.computed}
    segments = tuple(sorted({s.segment for s in data.stays if s.covers(now)})) if data.stays else ()
    render = BlockContext(traits=shown, computed=computed, consent=_consent_map(rt, allowed), segments=segments,
                          request=context, locale=locale or "")
    person = Person(rules, render, allowed, True, _impressions(conn, rt, plan.capped, profile_id, now) if plan.capped
                    else {}, _owned(conn, rt, profile_id) if plan.products else frozenset(), rt.traits)
    experiments = plan.experiments
    return Loaded(profile_id, person, _assignments(conn, rt.id, profile_id, experiments))


def _assignments(conn: Conn, ws: str, profile_id: str, experiments: Sequence[str]
                 ) -> dict[str, tuple[Assignment, str]]:
    """The stored assignments of the live profile in ``experiments`` (one query): experiment → (assignment, unit)."""
    out: dict[str, tuple[Assignment, str]] = {}
    for name, variant, bucket, reason, unit in sql.assignments(conn, ws, profile_id, experiments):
        out[str(name)] = Assignment(int(bucket), variant, sticky.REASONS.get(str(reason), "excluded")), str(unit)
    return out


def _consent_map(rt: WorkspaceRuntime, allowed: frozenset[str]) -> Mapping[str, bool]:
    """``consent.<purpose>`` as blocks read it: each purpose of the catalog, allowed or not (one per allowed set)."""
    key = (rt.id, rt.generation, allowed)
    hit = _CONSENT_MAPS.get(key)
    if hit is None:
        hit = MappingProxyType({p: p in allowed for p in rt.catalog.purposes})
        if rt.generation >= 0:  # a runtime not built from stored resources is not cached (as ``_plan``)
            if len(_CONSENT_MAPS) >= 4096:
                _CONSENT_MAPS.clear()
            _CONSENT_MAPS[key] = hit
    return hit


_CONSENT_MAPS: dict[tuple[str, int, frozenset[str]], Mapping[str, bool]] = {}


_NOBODY = ProfileData()
"""What is known of an unknown person (and read of a known one before their rows)."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """What deciding a combination of placements reads, worked out once per workspace generation."""

    needs: Needs
    summarized: frozenset[SummaryKey]
    """Summaries read (those of series read bucket by bucket left out)."""
    printed: frozenset[str]
    """Traits a block prints."""
    traits: tuple[str, ...]
    """Traits read by rules or printed, sorted."""
    computed: tuple[Path, ...]
    """Computed traits blocks print (those keeping personal values sealed left out), as rule paths."""
    experiments: tuple[str, ...]
    capped: tuple[str, ...]
    """Blocks with an impression cap, sorted: their past impressions are read."""
    products: bool
    """Whether a block names products (the person's bought or returned ones are read)."""


_PLANS: dict[tuple[str, int, tuple[str, ...]], _Plan] = {}
"""Plans by (workspace, generation, placements) (bounded: cleared when full)."""


def _plan(rt: WorkspaceRuntime, placements: Sequence[Placement]) -> _Plan:
    key = (rt.id, rt.generation, tuple([p.name for p in placements]))
    hit = _PLANS.get(key)
    if hit is None:
        needs = union(*(p.needs for p in placements))
        printed = frozenset().union(*(p.render_traits for p in placements))
        hit = _Plan(needs, frozenset(k for k in needs.windows if k[0] not in needs.rows), printed,
                    tuple(sorted(needs.traits | printed)),
                    tuple(Path("computed", (name,)) for name in dict.fromkeys(
                        name for p in placements for name in sorted(p.render_computed)
                        if name in rt.traits and not _sealed(rt, name))),
                    tuple(sorted({e.name for p in placements for e in p.experiments})),
                    tuple(sorted(frozenset().union(*(p.capped for p in placements)))),
                    any(p.reads_products for p in placements))
        if rt.generation >= 0:
            if len(_PLANS) >= 4096:
                _PLANS.clear()
            _PLANS[key] = hit
    return hit


def _sealed(rt: WorkspaceRuntime, name: str) -> bool:
    """Whether computed trait ``name`` keeps personal values sealed (not printable without opening)."""
    defn = rt.traits[name]
    return any(rt.series[s.id].personal for s in defn.all_series() if s.id in rt.series)


def _cipher(conn: Conn, rt: WorkspaceRuntime, keyring: Keyring, key_profile: str) -> Cipher | None:
    """The data cipher of the profile holding a person's trait values (the keyring caches unwrapped keys)."""
    cipher = keyring.cached_cipher(rt.id, key_profile)
    if cipher is None:
        row = identity_sql.profile_rows(conn, rt.id, [key_profile]).get(key_profile)
        if row is None:
            return None
        cipher = keyring.profile_cipher(rt.id, rt.wrapped_key, key_profile, bytes(row[3]))
    return cipher


def _opened(cipher: Cipher | None, value: Json) -> Json:
    """A stored trait value with its personal data decrypted (for rendering only)."""
    if not (pii.is_marker(value) or isinstance(value, dict | list)):
        return value
    if cipher is None:
        return None
    if pii.is_marker(value):
        return pii.decrypt_value(value, cipher.decrypt)
    return pii.decrypt_fields({"v": value}, cipher.decrypt)["v"]


def _impressions(conn: Conn, rt: WorkspaceRuntime, capped: Sequence[str], profile_id: str,
                 now: Millis) -> dict[str, list[Millis]]:
    """The past impressions of the ``capped`` blocks within the longest of their caps: block → times."""
    lib = library(rt)
    longest = max(cap.per_ms for cap in (lib.blocks[name].cap for name in capped) if cap is not None)
    out: dict[str, list[Millis]] = {}
    for block, at in sql.impressions(conn, rt.id, profile_id, capped, now - longest):
        out.setdefault(str(block), []).append(int(at))
    return out


def _owned(conn: Conn, rt: WorkspaceRuntime, profile_id: str) -> frozenset[str]:
    """The product ids the person bought or returned (their newest ``OWNING_EVENTS``)."""
    found: set[str] = set()
    for (body,) in sql.owning_event_bodies(conn, rt.id, profile_id, OWNED_LIMIT):
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
    holdout = rt.settings.holdout()
    for placement, name in pending:
        experiment = next(e for e in placement.experiments if e.name == name)
        sticky.assignment(conn, rt.id, name, experiment.salt, profile_id, experiment.variants,
                          holdout_percent=experiment.holdout, traffic_percent=experiment.traffic,
                          global_holdout=holdout, now=now)
    return _assignments(conn, rt.id, profile_id, [name for _, name in pending])


def preview(rt: WorkspaceRuntime, profile_id: str, pending: Sequence[tuple[Placement, str]]
            ) -> dict[str, tuple[Assignment, str]]:
    """The assignments ``assign`` would make, without storing them (a dry run)."""
    holdout = rt.settings.holdout()
    out: dict[str, tuple[Assignment, str]] = {}
    for placement, name in pending:
        experiment = next(e for e in placement.experiments if e.name == name)
        out[name] = place(experiment.salt, profile_id, experiment.variants, holdout_percent=experiment.holdout,
                          traffic_percent=experiment.traffic, global_holdout=holdout), profile_id
    return out


def decide_loaded(loaded: Loaded, placements: Sequence[Placement], lib: Library, *, now: Millis,
                  locale: str | None = None, models: Mapping[str, ScoringModel] | None = None) -> list[Decision]:
    """The decision of each placement for a loaded person (pure: what a benchmark times in-process). A ``Loaded``
    serves one request: its rules context keeps the computed values it has evaluated."""
    chain = locale_chain(locale)
    assignments = {name: a for name, (a, _) in loaded.assignments.items()}
    person = loaded.person
    variables = person.render.variables() if any(p.purpose in person.allowed for p in placements) else None
    return [decide(p, lib.blocks, person, now=now, locale_chain=chain, models=models, assignments=assignments,
                   variables=variables) for p in placements]


Impression = tuple[str, str, str, Millis]
"""(profile_id, block, placement, at)."""
ExposureRow = tuple[str, str, str | None, str, str, Millis]
"""(unit, experiment, variant, reason, source, at) as ``exposures.record_many`` takes them."""


def records(loaded: Loaded, placements: Sequence[Placement], lib: Library, decisions: Sequence[Decision],
            now: Millis) -> tuple[list[Impression], list[ExposureRow]]:
    """The impressions (of capped blocks) and experiment exposures the decisions leave."""
    if loaded.profile_id is None:
        return [], []
    # A consent fallback used none of the person's data: it counts toward no cap.
    impressions: list[Impression] = [(loaded.profile_id, d.block, d.placement, now) for d in decisions
                                     if d.block is not None and d.reason.kind != "consent_fallback"
                                     and lib.blocks[d.block].cap is not None]
    exposures: list[ExposureRow] = []
    for decision in decisions:
        exposure = decision.exposure
        if exposure is None or exposure.reason == "excluded" or exposure.experiment not in loaded.assignments:
            continue
        unit = loaded.assignments[exposure.experiment][1]
        exposures.append((unit, exposure.experiment, exposure.variant, exposure.reason,
                          f"placement:{decision.placement}", now))
    return impressions, exposures


CATALOG_SECONDS = 0.5
"""How long the latest trained versions are kept before being read again (a version stored by this process is
seen at once; one stored by another process, such as ``rapport models train``, within this time)."""
_CATALOGS: dict[str, tuple[float, int, int, Mapping[str, ScoringModel]]] = {}
"""Workspace → (read at, workspace generation, ``models.service.STORED`` then, the models)."""


def scoring_models(conn: Conn, rt: WorkspaceRuntime, placements: Sequence[Placement]) -> Mapping[str, ScoringModel]:
    """The latest trained version of each model the placements rank with (``rapport.models.service``)."""
    if not any(p.models for p in placements):
        return {}
    models_service = _models_service()
    now = time.monotonic()
    hit = _CATALOGS.get(rt.id)
    if (hit is not None and hit[1] == rt.generation and hit[2] == models_service.STORED[0]
            and now - hit[0] < CATALOG_SECONDS):
        return hit[3]
    stored = models_service.STORED[0]
    models: Mapping[str, ScoringModel] = models_service.scoring_models(conn, rt)
    if len(_CATALOGS) >= 1024:
        _CATALOGS.clear()
    _CATALOGS[rt.id] = (now, rt.generation, stored, models)
    return models


_MODELS_SERVICE: list[ModuleType] = []


def _models_service() -> ModuleType:
    """``rapport.models.service``, imported on first use: only workspaces that rank offers need the model store."""
    if not _MODELS_SERVICE:
        from rapport.models import service

        _MODELS_SERVICE.append(service)
    return _MODELS_SERVICE[0]


class _Started(NamedTuple):
    """A request read and decided up to its first assignments: what ``_finish`` needs."""

    rt: WorkspaceRuntime
    lib: Library
    placements: list[Placement]
    now: Millis
    loaded: Loaded
    models: Mapping[str, ScoringModel]
    pending: list[tuple[Placement, str]]


def _start(rapport: Rapport, ws: str, request: DecideRequest, full: bool) -> _Started:
    rt = rapport.runtime(WorkspaceId(ws))
    lib = library(rt)
    placements = placements_of(lib, request.placements, list_known=full)
    if not full:
        verify_identity(rapport, rt, request)
    now = rapport.clock.now_ms()

    def read(conn: Conn) -> tuple[Loaded, Mapping[str, ScoringModel]]:
        pid, consent = find_with_consent(conn, rt.id, request.id_type, request.id_value)
        if pid is None and request.id_type == "profile_id":
            raise NotFoundError(f"no profile {request.id_value!r}", code="profile_not_found")
        loaded = load_person(conn, rt, rapport.keyring, placements, pid, request.context, request.locale, now,
                             consent)
        allowed = loaded.person.allowed
        return loaded, scoring_models(conn, rt, [p for p in placements if p.purpose in allowed])

    loaded, models = rapport.db.read(read)
    pending = to_assign(loaded, placements) if loaded.profile_id is not None else []
    return _Started(rt, lib, placements, now, loaded, models, pending)


def _assign_job(started: _Started) -> Callable[[Conn], dict[str, tuple[Assignment, str]]]:
    pid = str(started.loaded.profile_id)
    return lambda conn: assign(conn, started.rt, pid, started.pending, started.now)


def _finish(rapport: Rapport, started: _Started, made: Mapping[str, tuple[Assignment, str]], request: DecideRequest,
            full: bool) -> JsonObject:
    loaded = started.loaded
    if made:
        loaded = Loaded(loaded.profile_id, loaded.person, {**loaded.assignments, **made})
    decisions = decide_loaded(loaded, started.placements, started.lib, now=started.now, locale=request.locale,
                              models=started.models)
    if not request.dry_run:
        record(rapport, started.rt.id, *records(loaded, started.placements, started.lib, decisions, started.now))
    out: JsonObject = {"decisions": {d.placement: d.to_json(full=full) for d in decisions}}
    if full:
        out["profile_id"] = loaded.profile_id
        if request.dry_run:
            out["dry_run"] = True
    return out


def decide_request(rapport: Rapport, ws: str, request: DecideRequest, *, full: bool) -> JsonObject:
    """Decide every placement of ``request``; the JSON response (``full``: the admin view). A first assignment is
    written and waited for; with ``request.dry_run`` it is only previewed and nothing is recorded."""
    started = _start(rapport, ws, request, full)
    made: Mapping[str, tuple[Assignment, str]] = {}
    if started.pending:
        if request.dry_run:
            made = preview(started.rt, str(started.loaded.profile_id), started.pending)
        else:
            made = rapport.db.write(_assign_job(started))
    return _finish(rapport, started, made, request, full)


async def decide_request_async(rapport: Rapport, ws: str, request: DecideRequest, *, full: bool) -> JsonObject:
    """``decide_request`` for the event loop: the reads run inline (microseconds on SQLite) and a first assignment
    is awaited on the writer's future instead of blocking the loop."""
    started = _start(rapport, ws, request, full)
    made: Mapping[str, tuple[Assignment, str]] = {}
    if started.pending:
        if request.dry_run:
            made = preview(started.rt, str(started.loaded.profile_id), started.pending)
        else:
            made = await asyncio.wrap_future(rapport.db.submit(_assign_job(started)))
    return _finish(rapport, started, made, request, full)


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
