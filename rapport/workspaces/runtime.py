"""A workspace as the running server uses it: settings, keys and compiled resource definitions.

Rebuilt when the workspace's resource generation changes, so a definition applied by any
process (API or CLI) is in use within a second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from rapport.consent.mapping import ConsentMapping
from rapport.consent.purposes import Catalog
from rapport.durations import parse_duration
from rapport.identity.model import IdentityRules
from rapport.privacy.pii import TRAIT_ONLY_FIELDS
from rapport.profiles.builtins import BUILTIN_TRAITS
from rapport.profiles.computed import SeriesKey, TraitDef
from rapport.rules import Node, parse, to_text
from rapport.types import JsonObject, WorkspaceId
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
    row: Sequence[Any], generation: int, resources: Sequence[tuple[str, JsonObject]]
) -> WorkspaceRuntime:
    """From a workspace row (id, name, created_at, wrapped_key, settings) and its live resources."""
    ws_id, name, _created, wrapped, settings_json = row
    settings = WorkspaceSettings.from_json(orjson.loads(settings_json))
    by_kind: dict[str, list[JsonObject]] = {}
    for kind, spec in resources:
        by_kind.setdefault(kind, []).append(spec)
    catalog = Catalog.from_resources(by_kind.get("ConsentPurpose", []))
    traits: dict[str, TraitDef] = {t.name: t for t in BUILTIN_TRAITS}
    for spec in by_kind.get("ComputedTrait", []):
        traits[spec["name"]] = trait_from_spec(spec)
    pii_fields = frozenset(f.lower() for f in settings.pii_fields)
    personal = pii_fields - TRAIT_ONLY_FIELDS
    series: dict[str, CompiledSeries] = {}
    for trait in traits.values():
        for key in trait.all_series():
            prior = series.get(key.id)
            purposes = frozenset({trait.purpose}) | (prior.purposes if prior else frozenset())
            on_pii = key.prop is not None and any(part.lower() in personal for part in key.prop.split("."))
            series[key.id] = CompiledSeries(key, parse(key.where) if key.where else None, purposes, on_pii)
    return WorkspaceRuntime(
        id=WorkspaceId(ws_id),
        name=name,
        wrapped_key=bytes(wrapped),
        settings=settings,
        generation=generation,
        catalog=catalog,
        mapping=ConsentMapping.from_settings(settings.consent_mapping, catalog),
        identity_rules=IdentityRules.from_settings(settings.identity),
        traits=traits,
        series=series,
        plans=tuple(by_kind.get("TrackingPlan", [])),
        pii_fields=pii_fields,
    )
