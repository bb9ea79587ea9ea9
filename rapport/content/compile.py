"""Content blocks, placements and the experiments on them, compiled once per workspace generation.

A decision must not parse rules or Liquid: ``library(rt)`` turns the workspace's ``ContentBlock``,
``Placement`` and ``Experiment`` specs into frozen values with parsed rules and what each placement reads of
a profile, cached by (workspace, generation).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Final

from rapport.clock import parse_iso
from rapport.content.substitute import Piece, newlines, plan
from rapport.durations import parse_duration
from rapport.experiments.assign import Number, Variant
from rapport.models.features import feature_needs
from rapport.resources.builtin.experiment import control_of
from rapport.resources.builtin.placement import DEFAULT_PURPOSE
from rapport.rules import Node, parse
from rapport.segments.stored import Needs, needs
from rapport.templates.render import Parts, compile_part, fields_read
from rapport.types import Json, JsonObject, Millis

if TYPE_CHECKING:
    from liquid import BoundTemplate
from rapport.workspaces.runtime import WorkspaceRuntime

MODEL_PURPOSE: Final = "analytics"
"""A ``Model`` resource's purpose when it names none (``rapport.models.spec.ModelSpec``)."""
HTML_CHANNELS: Final = frozenset({"web", "app", "email", "inapp"})
"""Channels whose blocks are HTML: values printed into them are HTML-escaped."""


@dataclass(frozen=True, slots=True)
class Cap:
    """At most ``count`` impressions of a block per person within ``per_ms``."""

    count: int
    per_ms: Millis
    per: str


@dataclass(frozen=True, slots=True)
class Block:
    """A ``ContentBlock`` ready to serve."""

    name: str
    channel: str
    locale: str | None
    texts: Mapping[str, Parts]
    """Liquid parts by lower-cased locale; ``""`` holds the block's own ``title``/``body``."""
    tags: tuple[str, ...] = ()
    valid_from: Millis | None = None
    valid_until: Millis | None = None
    value: float | None = None
    products: frozenset[str] = frozenset()
    cap: Cap | None = None
    when: Node | None = None
    when_text: str | None = None
    reads: frozenset[str] = frozenset()
    """The context paths its Liquid reads, e.g. ``traits.first_name``."""
    compiled: Mapping[str, tuple[CompiledPart, ...]] = field(default_factory=dict)
    """``texts`` parsed once: per locale, each part with its template (``None`` when it is plain text)."""

    @property
    def html(self) -> bool:
        return self.channel in HTML_CHANNELS

    def text_for(self, chain: tuple[str, ...]) -> tuple[str | None, str]:
        """The first locale of ``chain`` the block has a translation for (``None`` and ``""`` for its own text):
        the locale shown, and the key of ``texts``/``compiled``."""
        for tag in chain:
            if tag in self.texts:
                return tag, tag
        return self.locale, ""


@dataclass(frozen=True, slots=True)
class CompiledPart:
    """One Liquid part of a block: its name, its source and its parsed template (``None``: plain text)."""

    name: str
    source: str
    template: BoundTemplate | None
    pieces: tuple[Piece, ...] | None = None
    """The template as text and plain outputs, when it is only that (``rapport.content.substitute``)."""


def compile_parts(parts: Parts, html: bool) -> tuple[CompiledPart, ...]:
    """Parse each part once (HTML-escaping values for ``html``); text without Liquid markup stays text."""
    out = []
    for name, source in parts.items():
        text = str(source)
        if "{{" not in text and "{%" not in text:
            out.append(CompiledPart(name, newlines(text), None))
            continue
        template = compile_part("html" if html else name, text)
        out.append(CompiledPart(name, text, template, plan(template)))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class RuleVariant:
    block: str
    when: Node
    text: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """One offer of a ranked placement."""

    block: str
    model: str
    value: float | None = None
    when: Node | None = None
    when_text: str | None = None
    purpose: str | None = None
    """The model's own consent purpose: a person who does not allow it is not scored (``None``: the model is not
    defined)."""
    audience: Node | None = None
    """The model's audience rule: a person outside it is not scored."""
    audience_text: str | None = None


@dataclass(frozen=True, slots=True)
class ExperimentDef:
    """An ``Experiment`` on a placement, as the decision engine runs it."""

    name: str
    salt: str
    purpose: str
    running: bool
    variants: tuple[Variant, ...]
    blocks: Mapping[str, str | None]
    """The block of each variant; ``None`` for the control, which keeps the placement's own choice."""
    control: str
    holdout: Number = 0
    traffic: Number = 100
    when: Node | None = None
    when_text: str | None = None


@dataclass(frozen=True, slots=True)
class Placement:
    """A ``Placement`` ready to decide, with what deciding it reads of a profile."""

    name: str
    channel: str
    purpose: str
    default: str
    variants: tuple[RuleVariant, ...] = ()
    rank: tuple[Candidate, ...] = ()
    experiments: tuple[ExperimentDef, ...] = ()
    needs: Needs = field(default_factory=Needs)
    render_traits: frozenset[str] = frozenset()
    """Top-level trait names its blocks print (decrypted for rendering)."""
    render_computed: frozenset[str] = frozenset()
    reads_segments: bool = False
    reads_products: bool = False
    """Some block of it promotes products: the person's bought and returned products are loaded."""
    capped: frozenset[str] = frozenset()
    """Its blocks that have an impression cap."""
    models: frozenset[str] = frozenset()

    def blocks(self) -> tuple[str, ...]:
        """Every block it may serve, the default first, each once."""
        names = [self.default, *(v.block for v in self.variants), *(c.block for c in self.rank),
                 *(b for e in self.experiments for b in e.blocks.values() if b is not None)]
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True, slots=True)
class Library:
    """A workspace's compiled blocks and placements."""

    blocks: Mapping[str, Block]
    placements: Mapping[str, Placement]


def _millis(value: Json) -> Millis | None:
    return parse_iso(value) if isinstance(value, str) else None


def _rule(value: Json) -> Node | None:
    return parse(value) if isinstance(value, str) and value.strip() else None


def _number(value: Json) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _parts(doc: Mapping[str, Json]) -> Parts:
    return {part: str(doc[part]) for part in ("title", "body") if isinstance(doc.get(part), str)}


def compile_block(spec: JsonObject) -> Block:
    """A checked ``ContentBlock`` spec as a ``Block``."""
    texts: dict[str, Parts] = {"": _parts(spec)}
    for tag, doc in (spec.get("locales") or {}).items():
        if isinstance(doc, dict):
            texts[str(tag).lower()] = _parts(doc)
    cap = spec.get("cap")
    reads: set[str] = set()
    for parts in texts.values():
        reads |= fields_read(parts)
    channel = str(spec["channel"])
    return Block(
        name=str(spec["name"]), channel=channel,
        locale=str(spec["locale"]).lower() if spec.get("locale") else None, texts=texts,
        tags=tuple(spec.get("tags") or ()), valid_from=_millis(spec.get("valid_from")),
        valid_until=_millis(spec.get("valid_until")), value=_number(spec.get("value")),
        products=frozenset(str(p) for p in spec.get("products") or ()),
        cap=Cap(int(cap["count"]), parse_duration(str(cap["per"])), str(cap["per"])) if isinstance(cap, dict)
        else None,
        when=_rule(spec.get("when")), when_text=spec.get("when"), reads=frozenset(reads),
        compiled={tag: compile_parts(parts, channel in HTML_CHANNELS) for tag, parts in texts.items()})


def _fraction(value: Json, default: int) -> Number:
    if value is None:
        return default
    if isinstance(value, float):
        return Fraction(str(value))
    return value if isinstance(value, int | str) else default


def compile_experiment(spec: JsonObject) -> ExperimentDef:
    """An ``Experiment`` spec on a placement (see DESIGN 4.9 and the Experiment kind)."""
    raw = spec.get("variants") or {}
    names = [str(name) for name in raw]
    control = control_of(raw) if names else "control"
    variants = tuple(Variant(name, _weight(raw[name])) for name in names)
    blocks = {name: (str(raw[name]["block"]) if isinstance(raw[name], dict) and raw[name].get("block")
                     and name != control else None) for name in names}
    return ExperimentDef(
        name=str(spec["name"]), salt=str(spec.get("salt") or spec["name"]),
        purpose=str(spec.get("purpose") or DEFAULT_PURPOSE), running=spec.get("status", "running") != "stopped",
        variants=variants, blocks=blocks, control=control, holdout=_fraction(spec.get("holdout"), 0),
        traffic=_fraction(spec.get("traffic"), 100), when=_rule(spec.get("when")), when_text=spec.get("when"))


def _weight(item: Json) -> Fraction | int:
    weight = item.get("weight", 1) if isinstance(item, dict) else 1
    if isinstance(weight, float):
        return Fraction(str(weight))
    return weight if isinstance(weight, int) and not isinstance(weight, bool) else 1


def union(*all_needs: Needs) -> Needs:
    """What any of ``all_needs`` reads."""
    return Needs(
        traits=frozenset().union(*(n.traits for n in all_needs)),
        series=frozenset().union(*(n.series for n in all_needs)),
        distinct=frozenset().union(*(n.distinct for n in all_needs)),
        consent=True,
        segments=frozenset().union(*(n.segments for n in all_needs)),
        windows=frozenset().union(*(n.windows for n in all_needs)),
        rows=frozenset().union(*(n.rows for n in all_needs)),
        fields=frozenset().union(*(n.fields for n in all_needs)))


def _root(path: str) -> tuple[str, str | None]:
    head, _, rest = path.partition(".")
    return head, (rest.split(".")[0].split("[")[0] or None) if rest else None


def compile_placement(spec: JsonObject, blocks: Mapping[str, Block], experiments: tuple[ExperimentDef, ...],
                      rt: WorkspaceRuntime, features: Mapping[str, tuple[str, ...]],
                      model_specs: Mapping[str, JsonObject] | None = None) -> Placement:
    """A checked ``Placement`` spec with the experiments on it; ``features`` are each model's feature names,
    ``model_specs`` the ``Model`` specs (each ranked offer takes its model's purpose and audience)."""
    variants = tuple(RuleVariant(str(v["block"]), parse(str(v["when"])), str(v["when"]))
                     for v in spec.get("variants") or ())
    models = model_specs or {}

    def candidate(c: JsonObject) -> Candidate:
        model = models.get(str(c["model"]))
        purpose = str(model.get("purpose") or MODEL_PURPOSE) if model is not None else None
        audience = model.get("audience") if model is not None else None
        return Candidate(str(c["block"]), str(c["model"]), _number(c.get("value")), _rule(c.get("when")),
                         c.get("when"), purpose, _rule(audience), audience if isinstance(audience, str) else None)

    rank = tuple(candidate(c) for c in spec.get("rank") or ())
    placement = Placement(name=str(spec["name"]), channel=str(spec["channel"]),
                          purpose=str(spec.get("purpose") or DEFAULT_PURPOSE), default=str(spec["default"]),
                          variants=variants, rank=rank, experiments=experiments)
    served = [blocks[name] for name in placement.blocks() if name in blocks]
    rules: list[Node] = [v.when for v in variants] + [c.when for c in rank if c.when is not None]
    rules += [c.audience for c in rank if c.audience is not None]
    rules += [b.when for b in served if b.when is not None]
    rules += [e.when for e in experiments if e.when is not None]
    traits: set[str] = set()
    computed: set[str] = set()
    reads_segments = False
    for block in served:
        for path in block.reads:
            root, name = _root(path)
            if root == "traits" and name:
                traits.add(name)
            elif root == "computed" and name:
                computed.add(name)
            elif root == "segments":
                reads_segments = True
    scored = {f for c in rank for f in features.get(c.model, ())}
    wanted = union(*(needs(rule, rt) for rule in rules), feature_needs(computed | scored, rt),
                   Needs(traits=frozenset(traits),
                         segments=frozenset(rt.segments) if reads_segments else frozenset()))
    return Placement(
        name=placement.name, channel=placement.channel, purpose=placement.purpose, default=placement.default,
        variants=variants, rank=rank, experiments=experiments, needs=wanted, render_traits=frozenset(traits),
        render_computed=frozenset(computed), reads_segments=reads_segments,
        reads_products=any(b.products for b in served), capped=frozenset(b.name for b in served if b.cap),
        models=frozenset(c.model for c in rank))


def build_library(rt: WorkspaceRuntime, features: Mapping[str, tuple[str, ...]] | None = None) -> Library:
    """Compile the workspace's blocks and placements (``features``: each model's feature names, when known)."""
    blocks = {name: compile_block(spec) for name, spec in rt.specs.get("ContentBlock", {}).items()}
    on: dict[str, list[ExperimentDef]] = {}
    for spec in rt.specs.get("Experiment", {}).values():
        target = spec.get("placement")
        if isinstance(target, str):
            on.setdefault(target, []).append(compile_experiment(spec))
    model_features = dict(features or {})
    for spec in rt.specs.get("Model", {}).values():
        declared = spec.get("features")
        if isinstance(declared, list) and str(spec["name"]) not in model_features:
            model_features[str(spec["name"])] = tuple(str(f) for f in declared)
    model_specs = {str(spec["name"]): spec for spec in rt.specs.get("Model", {}).values()}
    placements = {name: compile_placement(spec, blocks, tuple(sorted(on.get(name, ()), key=lambda e: e.name)), rt,
                                          model_features, model_specs)
                  for name, spec in rt.specs.get("Placement", {}).items()}
    return Library(blocks, placements)


_CACHE: dict[str, tuple[int, Library]] = {}
_LOCK: Final = threading.Lock()


def library(rt: WorkspaceRuntime) -> Library:
    """The compiled library of ``rt``, built once per workspace generation."""
    hit = _CACHE.get(rt.id)
    if hit is not None and hit[0] == rt.generation and rt.generation >= 0:
        return hit[1]
    built = build_library(rt)
    if rt.generation >= 0:
        with _LOCK:
            _CACHE[rt.id] = (rt.generation, built)
    return built


def locale_chain(tag: str | None) -> tuple[str, ...]:
    """The locales to try for a request in ``tag``, most specific first: ``de-AT`` → ``("de-at", "de")``."""
    if not tag:
        return ()
    parts = tag.strip().lower().replace("_", "-").split("-")
    return tuple("-".join(parts[:n]) for n in range(len(parts), 0, -1) if parts[0])
