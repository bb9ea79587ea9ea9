"""A workspace as the running server uses it: settings, keys and compiled resource definitions.

Rebuilt when the workspace's resource generation changes, so a definition applied by any
process (API or CLI) is in use within a second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from rapport.consent.mapping import ConsentMapping
from rapport.consent.purposes import Catalog
from rapport.durations import parse_duration
from rapport.identity.model import IdentityRules
from rapport.journeys.model import Journey, journey_rules, listened
from rapport.journeys.model import build as build_journey
from rapport.models.spec import score_trait
from rapport.privacy.pii import TRAIT_ONLY_FIELDS
from rapport.profiles.builtins import BUILTIN_TRAITS
from rapport.profiles.computed import SeriesKey, TraitDef
from rapport.resources.builtin.subscription_group import SubscriptionGroup
from rapport.resources.builtin.suppression_rule import SuppressionRuleDef
from rapport.resources.builtin.template import PARTS as TEMPLATE_PARTS
from rapport.rules import Node, event_functions, parse, paths, to_text
from rapport.rules import segments as rule_segments
from rapport.segments.functions import series_key as event_series_key
from rapport.templates.render import Parts
from rapport.types import JsonObject, Millis, WorkspaceId
from rapport.workspaces.model import WorkspaceSettings


@dataclass(frozen=True, slots=True)
class CompiledSeries:
    key: SeriesKey
    where: Node | None
    purposes: frozenset[str]
    """Purposes of the traits reading this series; an event feeds it only with consent for them."""
    personal: bool = False
    """Its property is personal data (a PII field on its path): the values it keeps are sealed."""


@dataclass(frozen=True, slots=True)
class CompiledSegment:
    """A ``Segment`` resource ready to evaluate: its parsed rule and what the rule reads."""

    name: str
    version: int
    rule: Node | None
    """None for a group's default segment without a rule: it takes everyone the group leaves."""
    spec: JsonObject
    series: frozenset[str]
    """Ids of the series its event functions read (hidden series kept for it)."""
    computed: frozenset[str]
    traits: frozenset[str]
    """Top-level trait names it reads."""
    consent: frozenset[str]
    segments: frozenset[str]

    group: str | None = None
    """The exclusive group (``group:``), read often enough in membership to be kept as a field."""
    priority: int = 0
    is_default: bool = False

    @property
    def purpose(self) -> str | None:
        value = self.spec.get("purpose")
        return str(value) if value else None

    @property
    def refresh_ms(self) -> int | None:
        """How often the batch engine reconciles the segment (``refresh:``), or None: on demand only."""
        value = self.spec.get("refresh")
        return parse_duration(str(value)) if value else None


SEGMENT_SERIES_PURPOSE = "analytics"
"""The purpose of the hidden series behind a segment rule's event functions: profiling."""


def compile_segment(spec: JsonObject, version: int) -> CompiledSegment:
    text = spec.get("rule")
    rule = parse(str(text)) if text else None
    found = paths(rule) if rule is not None else frozenset()
    return CompiledSegment(
        name=str(spec["name"]), version=version, rule=rule, spec=spec,
        series=frozenset(event_series_key(fn).id for fn in event_functions(rule)) if rule else frozenset(),
        computed=frozenset(p.parts[0] for p in found if p.root == "computed" and p.parts),
        traits=frozenset(p.parts[0] for p in found if p.root == "traits" and p.parts),
        consent=frozenset(p.parts[0] for p in found if p.root == "consent" and p.parts),
        segments=rule_segments(rule) if rule is not None else frozenset(),
        group=str(spec["group"]) if spec.get("group") else None,
        priority=int(spec.get("priority") or 0),
        is_default=bool(spec.get("default")),
    )


@dataclass(frozen=True, slots=True)
class WorkspaceRuntime:
    id: WorkspaceId
    name: str
    wrapped_key: bytes
    settings: WorkspaceSettings
    generation: int
    catalog: Catalog
    mapping: ConsentMapping
    identity_rules: IdentityRules
    traits: Mapping[str, TraitDef]
    series: Mapping[str, CompiledSeries]
    plans: tuple[JsonObject, ...]
    pii_fields: frozenset[str]
    segments: Mapping[str, CompiledSegment] = field(default_factory=dict)
    journeys: Mapping[str, Journey] = field(default_factory=dict)
    """The published (latest) version of each journey."""
    templates: Mapping[str, Parts] = field(default_factory=dict)
    """Each Template's message parts (Liquid sources)."""
    channels: Mapping[str, JsonObject] = field(default_factory=dict)
    """Each Channel resource's checked spec (adapters are built from them by the worker)."""
    journey_events: frozenset[str] | None = frozenset()
    """Names of the events the journeys listen to (entry, ``wait_for``, goal, the events ``exit_when`` counts,
    ``Segment Entered``/``Exited``); ``None`` when some ``exit_when`` reads traits or consent, so every event
    matters."""
    suppression_rules: tuple[SuppressionRuleDef, ...] = ()
    """The send gate's ``SuppressionRule`` resources, by name."""
    subscription_groups: Mapping[str, SubscriptionGroup] = field(default_factory=dict)
    specs: Mapping[str, Mapping[str, JsonObject]] = field(default_factory=dict)
    """Every live resource's checked spec, by kind then name: kinds compiled elsewhere (content, placements,
    experiments, metrics, models) read theirs from here."""
    versions: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """The live version of each resource, by (kind, name)."""
    identity_version: int = 1
    """The version of the identity-verification secret (``rapport.workspaces.verification``)."""
    identity_previous_until: Millis | None = None
    """During a rotation of that secret, until when the previous version's hashes are still accepted."""

    def trait_purposes(self) -> frozenset[str]:
        return frozenset(t.purpose for t in self.traits.values())


def trait_from_spec(spec: Mapping[str, Any]) -> TraitDef:
    """A ``ComputedTrait`` resource (already validated) as a trait definition."""
    where = spec.get("where")
    return TraitDef(
        name=spec["name"],
        aggregate=spec["aggregate"],
        series=SeriesKey(spec["event"], spec.get("property"), to_text(parse(where)) if where else None),
        window_ms=parse_duration(spec["window"]) if spec.get("window") else None,
        purpose=spec.get("purpose", "analytics"),
        description=spec.get("description", ""),
    )


def build_runtime(
    row: Sequence[Any], generation: int, resources: Sequence[tuple[str, JsonObject, int]]
) -> WorkspaceRuntime:
    """From a workspace row (id, name, created_at, wrapped_key, settings[, identity_version,
    identity_previous_until]) and its live resources (kind, spec, version)."""
    ws_id, name, _created, wrapped, settings_json = row[:5]
    identity_version, previous_until = (int(row[5]), None if row[6] is None else int(row[6])) if len(row) > 5 else (
        1, None)
    settings = WorkspaceSettings.from_json(orjson.loads(settings_json))
    by_kind: dict[str, list[JsonObject]] = {}
    versions: dict[tuple[str, str], int] = {}
    for kind, spec, version in resources:
        by_kind.setdefault(kind, []).append(spec)
        versions[(kind, str(spec["name"]))] = version
    catalog = Catalog.from_resources(by_kind.get("ConsentPurpose", []))
    traits: dict[str, TraitDef] = {t.name: t for t in BUILTIN_TRAITS}
    for spec in by_kind.get("ComputedTrait", []):
        traits[spec["name"]] = trait_from_spec(spec)
    pii_fields = frozenset(f.lower() for f in settings.pii_fields)
    personal = pii_fields - TRAIT_ONLY_FIELDS
    series: dict[str, CompiledSeries] = {}

    def read(key: SeriesKey, purpose: str) -> None:
        """Keep series ``key`` for a reader of ``purpose`` (purposes of every reader add up)."""
        prior = series.get(key.id)
        purposes = frozenset({purpose}) | (prior.purposes if prior else frozenset())
        on_pii = key.prop is not None and any(part.lower() in personal for part in key.prop.split("."))
        series[key.id] = CompiledSeries(key, parse(key.where) if key.where else None, purposes, on_pii)

    for trait in traits.values():
        for key in trait.all_series():
            read(key, trait.purpose)
    for spec in by_kind.get("Model", []):  # scores written back: traits over series no event feeds
        score = score_trait(spec)
        if score is not None and score.name not in traits:
            traits[score.name] = score
    segments: dict[str, CompiledSegment] = {}
    for spec in by_kind.get("Segment", []):
        segment = compile_segment(spec, versions[("Segment", str(spec["name"]))])
        segments[segment.name] = segment
        for fn in event_functions(segment.rule) if segment.rule is not None else ():
            read(event_series_key(fn), SEGMENT_SERIES_PURPOSE)
    journeys: dict[str, Journey] = {}
    for spec in by_kind.get("Journey", []):
        journey = build_journey(spec, versions[("Journey", str(spec["name"]))])
        journeys[journey.name] = journey
        audience = journey.audience.rule if journey.audience is not None else None
        for node in [*journey_rules(journey), *([audience] if audience is not None else [])]:
            for fn in event_functions(node):
                read(event_series_key(fn), SEGMENT_SERIES_PURPOSE)
    return WorkspaceRuntime(
        id=WorkspaceId(ws_id),
        name=name,
        wrapped_key=bytes(wrapped),
        settings=settings,
        generation=generation,
        identity_version=identity_version,
        identity_previous_until=previous_until,
        catalog=catalog,
        mapping=ConsentMapping.from_settings(settings.consent_mapping, catalog),
        identity_rules=IdentityRules.from_settings(settings.identity),
        traits=traits,
        series=series,
        plans=tuple(by_kind.get("TrackingPlan", [])),
        pii_fields=pii_fields,
        segments=segments,
        journeys=journeys,
        templates={str(spec["name"]): {part: spec[part] for part in TEMPLATE_PARTS if spec.get(part) is not None}
                   for spec in by_kind.get("Template", [])},
        channels={str(spec["name"]): spec for spec in by_kind.get("Channel", [])},
        journey_events=listened(journeys.values()),
        suppression_rules=tuple(sorted((SuppressionRuleDef.from_spec(spec)
                                        for spec in by_kind.get("SuppressionRule", [])), key=lambda r: r.name)),
        subscription_groups={str(spec["name"]): SubscriptionGroup.from_spec(spec)
                             for spec in by_kind.get("SubscriptionGroup", [])},
        specs={kind: {str(spec["name"]): spec for spec in specs} for kind, specs in by_kind.items()},
        versions=versions,
    )
