"""The decision engine: which block a placement shows a person now, why, how sure, and what was ruled out.

Pure: it takes the compiled placement and blocks, what is known of the person (an ``EvalContext`` for rules, a
template context for rendering, consent, past impressions, owned products), the scoring models, the person's
experiment assignments and the instant, and returns a ``Decision``. The service (``decisions.service``) loads
those facts and records impressions and exposures.

Order of a decision:

1. Without consent for the placement's purpose the default block is shown (reason ``consent_fallback``),
   rendered without personal data; only its validity window is checked, as its rule, cap and products would
   read the person's data.
2. Otherwise the placement's own choice: the first ``variants`` entry whose rule matches (``rule``), or the
   ``rank`` candidates by expected value = calibrated propensity × value (``rank``; a candidate whose model's
   own purpose the person does not allow, or whose audience rule they are outside, is not scored), else the default
   (``default``). Each block must pass its guardrails: validity window, its own ``when`` rule, its impression
   cap, and none of its products bought or returned; a block that fails is skipped and listed in ``guardrails``.
3. An experiment on the placement then replaces the choice with its variant's block (``experiment``) for people
   assigned to a variant that has one; the control and held-out people keep the own choice.
4. When no block passes, nothing is shown (``not_eligible``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Final, Literal, NamedTuple, Protocol, TypeVar, overload

from liquid.exceptions import LiquidError

from rapport.content.compile import Block, ExperimentDef, Placement
from rapport.content.substitute import substitute
from rapport.errors import ValidationError
from rapport.experiments.assign import Assignment
from rapport.models.features import feature_values as model_features
from rapport.models.score import Reason as ModelReason
from rapport.models.score import Scored
from rapport.profiles.computed import TraitDef
from rapport.rules import EvalContext, Node
from rapport.rules.compile import Predicate, compile_rule
from rapport.types import Json, JsonObject, Millis

ReasonKind = Literal["rule", "rank", "experiment", "default", "consent_fallback", "not_eligible"]
TOP_REASONS: Final = 3
"""Model reasons reported per ranked offer."""


class ScoringModel(Protocol):
    """A trained propensity model (``rapport.models.score.ScoringModel`` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def features(self) -> tuple[str, ...]: ...

    def score(self, values: Mapping[str, float | None]) -> Scored: ...

    def probability(self, values: Mapping[str, float | None]) -> float: ...


class TopReasons(Sequence[ModelReason]):
    """A score's largest contributions (at most ``TOP_REASONS``), worked out on first read: only an admin's view
    of a decision shows them, so ranking for a public caller scores without them."""

    __slots__ = ("_done", "_model", "_values")

    def __init__(self, model: ScoringModel, values: Mapping[str, float | None]) -> None:
        self._model = model
        self._values = values
        self._done: tuple[ModelReason, ...] | None = None

    def _reasons(self) -> tuple[ModelReason, ...]:
        if self._done is None:
            self._done = self._model.score(self._values).reasons[:TOP_REASONS]
        return self._done

    @overload
    def __getitem__(self, index: int) -> ModelReason: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[ModelReason]: ...

    def __getitem__(self, index: int | slice) -> ModelReason | Sequence[ModelReason]:
        return self._reasons()[index]

    def __len__(self) -> int:
        return len(self._reasons())

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, Sequence) else other)

    def __hash__(self) -> int:
        return hash(self._reasons())

    def __repr__(self) -> str:
        return repr(self._reasons())


class Opened(Mapping[str, Json]):
    """Trait values for rendering, each opened (its personal data decrypted) on first read: a decision whose
    blocks print no personal trait decrypts nothing. Serves one request (not shared between threads)."""

    __slots__ = ("_done", "_open", "_raw")

    def __init__(self, raw: Mapping[str, Json], open_value: Callable[[Json], Json]) -> None:
        self._raw = raw
        self._open = open_value
        self._done: dict[str, Json] = {}

    def __getitem__(self, key: str) -> Json:
        done = self._done.get(key, _UNSET)
        if done is _UNSET:
            done = self._done[key] = self._open(self._raw[key])
        return done

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


_UNSET: Final = object()


_NOTHING: Final[Mapping[str, Json]] = MappingProxyType({})
_NO_CONSENT: Final[Mapping[str, bool]] = MappingProxyType({})


class BlockContext(NamedTuple):
    """What a block's Liquid reads: what a ``TemplateContext`` holds (``rapport.templates.render``) plus the
    request's ``context`` and ``locale``. A tuple: one is made per decision."""

    traits: Mapping[str, Json] = _NOTHING
    computed: Mapping[str, Json] = _NOTHING
    event: Mapping[str, Json] = _NOTHING
    consent: Mapping[str, bool] = _NO_CONSENT
    segments: Sequence[str] = ()
    unsubscribe_url: str = ""
    request: Mapping[str, Json] = _NOTHING
    locale: str = ""

    def variables(self) -> dict[str, object]:
        """The Liquid globals; ``traits`` stays as given (an ``Opened`` decrypts only what is printed)."""
        return {"traits": self.traits, "computed": _copy(self.computed), "event": _copy(self.event),
                "consent": _copy(self.consent), "segments": list(self.segments),
                "unsubscribe_url": self.unsubscribe_url, "context": _copy(self.request), "locale": self.locale}


_V = TypeVar("_V")


def _copy(mapping: Mapping[str, _V]) -> dict[str, _V]:
    """A dict copy (a read-only proxy is copied through the dict it shows, not key by key)."""
    if isinstance(mapping, MappingProxyType):
        return mapping.copy()
    return dict(mapping)


def _plain(variables: Mapping[str, object]) -> Mapping[str, object]:
    """``variables`` with lazily opened traits made a plain dict, as Liquid's filters expect."""
    traits = variables.get("traits")
    return {**variables, "traits": dict(traits)} if isinstance(traits, Opened) else variables


_NO_IMPRESSIONS: Final[Mapping[str, Sequence[Millis]]] = MappingProxyType({})
_NO_TRAIT_DEFS: Final[Mapping[str, TraitDef]] = MappingProxyType({})


class Person(NamedTuple):
    """What the engine knows of the person a decision is for (an immutable tuple: one is made per decision)."""

    rules: EvalContext
    """Reads ``traits``, ``computed``, ``consent``, ``in_segment`` and ``context`` (the request's)."""
    render: BlockContext
    allowed: frozenset[str]
    """The consent purposes the person allows now."""
    known: bool = True
    impressions: Mapping[str, Sequence[Millis]] = _NO_IMPRESSIONS
    """Past impression times of each capped block."""
    owned: frozenset[str] = frozenset()
    """Product ids the person bought or returned."""
    trait_defs: Mapping[str, TraitDef] = _NO_TRAIT_DEFS
    """The workspace's computed-trait definitions: model features are read through them as in training."""


class Dropped(NamedTuple):
    """A block left out of a decision, and why (``why`` is a stable code, ``detail`` says it in words)."""

    block: str
    why: str
    detail: str

    def to_json(self) -> JsonObject:
        return {"block": self.block, "why": self.why, "detail": self.detail}


class Reason(NamedTuple):
    """Why the block was chosen; ``kind`` says which path, the other fields its details. The engine's results
    (``Reason``, ``Decision``, ``Dropped``, ``Exposure``) are immutable tuples: several are made per decision."""

    kind: ReasonKind
    variant_index: int | None = None
    rule: str | None = None
    model: str | None = None
    model_version: int | None = None
    score: float | None = None
    value: float | None = None
    expected_value: float | None = None
    model_reasons: Sequence[ModelReason] = ()
    """The score's largest contributions (at most ``TOP_REASONS``; a ``TopReasons``), formatted only when asked
    for."""
    experiment: str | None = None
    variant: str | None = None
    assignment: str | None = None
    """How the experiment placed the person: ``variant``, ``holdout``, ``excluded``, ``global_holdout``."""
    skipped_experiments: tuple[JsonObject, ...] = ()

    @property
    def top_reasons(self) -> tuple[JsonObject, ...]:
        """The model's top reasons as the API reports them."""
        return tuple({"feature": r.feature, "value": r.value, "contribution": round(r.contribution, 6)}
                     for r in self.model_reasons)

    def to_json(self, *, full: bool) -> JsonObject:
        """The reason; without ``full`` only its kind and the experiment arm (what a write-key caller sees), with
        ``consent_fallback`` read as ``default``."""
        # A write-key caller names any user_id: ``consent_fallback`` would tell it whether that id consented.
        out: JsonObject = {"kind": self.kind if full or self.kind != "consent_fallback" else "default"}
        if self.experiment is not None:
            out["experiment"] = self.experiment
            out["variant"] = self.variant
        if not full:
            return out
        for key in ("variant_index", "rule", "model", "model_version", "score", "value", "expected_value",
                    "assignment"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.top_reasons:
            out["top_reasons"] = list(self.top_reasons)
        if self.skipped_experiments:
            out["skipped_experiments"] = list(self.skipped_experiments)
        return out


class Exposure(NamedTuple):
    """An experiment exposure to record: the person saw ``variant`` (None when held out) of ``experiment``."""

    experiment: str
    variant: str | None
    reason: str


class Decision(NamedTuple):
    """One placement's decision."""

    placement: str
    block: str | None
    content: Mapping[str, str] | None
    locale: str | None
    reason: Reason
    confidence: float
    guardrails: tuple[Dropped, ...] = ()
    exposure: Exposure | None = None

    def to_json(self, *, full: bool) -> JsonObject:
        """The decision as the API returns it; without ``full`` (a write-key caller) only the placement, the
        block, its rendered content and the reason's kind with the experiment arm."""
        out: JsonObject = {"placement": self.placement, "block": self.block,
                           "content": dict(self.content) if self.content is not None else None,
                           "reason": self.reason.to_json(full=full)}
        if full:
            out["locale"] = self.locale
            out["confidence"] = self.confidence
            out["guardrails"] = [d.to_json() for d in self.guardrails]
        return out


def eligible(block: Block, person: Person, now: Millis, *, personal: bool = True) -> Dropped | None:
    """Why ``block`` may not be shown to ``person`` at ``now``, or ``None`` when it may. Without ``personal``
    (no consent to use the person's data) only the validity window is checked."""
    if block.valid_from is not None and now < block.valid_from:
        return Dropped(block.name, "outside_validity", "the block's validity window has not opened yet")
    if block.valid_until is not None and now >= block.valid_until:
        return Dropped(block.name, "outside_validity", "the block's validity window has closed")
    if not personal:
        return None
    if block.when is not None and not holds(block.when, person.rules):
        return Dropped(block.name, "not_eligible", f"the block's rule does not match: {block.when_text}")
    if block.cap is not None:
        seen = sum(1 for at in person.impressions.get(block.name, ()) if at > now - block.cap.per_ms)
        if seen >= block.cap.count:
            return Dropped(block.name, "cap_reached", f"shown {seen} time(s) in the last {block.cap.per}; the cap "
                                                      f"is {block.cap.count}")
    if block.products and block.products & person.owned:
        return Dropped(block.name, "already_bought_or_returned",
                       f"the person bought or returned {len(block.products & person.owned)} of its products")
    return None


def render_block(block: Block, key: str, variables: Mapping[str, object]) -> dict[str, str]:
    """The block's text ``key`` (a locale of ``block.texts``) rendered leniently with ``variables`` (a missing
    value prints nothing); HTML channels escape values. Raises ``ValidationError`` (``template_error``) when a
    part cannot render (a filter given a value it cannot take, a sandbox limit)."""
    out: dict[str, str] = {}
    for part in block.compiled[key]:
        if part.template is None:
            out[part.name] = part.source
            continue
        fast = substitute(part.pieces, variables, block.html) if part.pieces is not None else None
        if fast is not None:
            out[part.name] = fast
            continue
        try:
            out[part.name] = part.template.render(_plain(variables))
        except LiquidError as exc:
            raise ValidationError(f"template part {part.name!r}: {exc.message}", code="template_error") from None
    return out


_COMPILED: dict[int, tuple[Node, Predicate]] = {}
"""Rules compiled to closures (``rapport.rules.compile``, equal to the interpreter by property test), by the id of
the rule's node: compiled placements keep their nodes for a workspace generation, so each is compiled once."""
_COMPILED_MAX = 20_000


def holds(rule: Node, ctx: EvalContext) -> bool:
    """``evaluate(rule, ctx)``, through the rule's compiled closure."""
    found = _COMPILED.get(id(rule))
    if found is None or found[0] is not rule:
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        found = _COMPILED[id(rule)] = (rule, compile_rule(rule))
    return found[1](ctx)


def feature_values(model: ScoringModel, person: Person) -> dict[str, float | None]:
    """The model's features for the person, read exactly as training read them (``rapport.models.features``)."""
    return model_features(model.features, person.trait_defs, person.rules)


def experiment_gate(experiment: ExperimentDef, person: Person) -> str | None:
    """Why the person takes no part in ``experiment`` now (``None``: they are to be assigned)."""
    if not experiment.running:
        return "stopped"
    if not person.known:
        return "unknown_person"
    if experiment.purpose not in person.allowed:
        return "no_consent"
    if experiment.when is not None and not holds(experiment.when, person.rules):
        return "not_targeted"
    return None


def decide(placement: Placement, blocks: Mapping[str, Block], person: Person, *, now: Millis,
           locale_chain: tuple[str, ...] = (), models: Mapping[str, ScoringModel] | None = None,
           assignments: Mapping[str, Assignment] | None = None,
           variables: Mapping[str, object] | None = None) -> Decision:
    """The decision for ``placement`` (see the module docstring for the order of the steps); ``variables``: the
    person's Liquid globals (``person.render.variables()``) when a caller deciding several placements made them."""
    dropped: list[Dropped] = []
    if placement.purpose not in person.allowed:
        return _fallback(placement, blocks, person, now, locale_chain, dropped)
    if variables is None:
        variables = person.render.variables()
    own = _own_choice(placement, blocks, person, now, models or {}, locale_chain, variables, dropped)
    skipped: list[JsonObject] = []
    for experiment in placement.experiments:
        gate = experiment_gate(experiment, person)
        assignment = (assignments or {}).get(experiment.name)
        if gate is not None or assignment is None or assignment.reason == "excluded":
            # "excluded": outside the experiment's traffic share, so not part of it at all.
            skipped.append({"experiment": experiment.name,
                            "why": gate or ("unassigned" if assignment is None else "excluded")})
            continue
        exposure = Exposure(experiment.name, assignment.variant, assignment.reason)
        arm = experiment.blocks.get(assignment.variant) if assignment.variant is not None else None
        if arm is not None:
            block = blocks.get(arm)
            problem = (Dropped(arm, "unknown_block", f"no content block {arm!r}") if block is None
                       else eligible(block, person, now))
            if block is not None and problem is None:
                chosen = _render(block, Reason("experiment", experiment=experiment.name, variant=assignment.variant,
                                               assignment=assignment.reason, skipped_experiments=tuple(skipped)),
                                 1.0, variables, locale_chain, dropped)
                if chosen is not None:
                    return _decision(placement, chosen, chosen.reason, chosen.confidence, dropped, exposure)
            elif problem is not None:
                dropped.append(problem)
        base = own.reason if own is not None else Reason("not_eligible")
        reason = base._replace(experiment=experiment.name, variant=assignment.variant, assignment=assignment.reason,
                         skipped_experiments=tuple(skipped))
        if own is None:
            return Decision(placement.name, None, None, None, reason, 0.0, tuple(dropped), exposure)
        return _decision(placement, own, reason, own.confidence, dropped, exposure)
    if own is None:
        return Decision(placement.name, None, None, None, Reason("not_eligible", skipped_experiments=tuple(skipped)),
                        0.0, tuple(dropped))
    reason = own.reason._replace(skipped_experiments=tuple(skipped)) if skipped else own.reason
    return _decision(placement, own, reason, own.confidence, dropped, None)


class _Rendered(NamedTuple):
    """A block rendered for a decision, with why it was chosen."""

    block: Block
    reason: Reason
    confidence: float
    locale: str | None
    content: Mapping[str, str]


def _decision(placement: Placement, chosen: _Rendered, reason: Reason, confidence: float, dropped: list[Dropped],
              exposure: Exposure | None) -> Decision:
    return Decision(placement.name, chosen.block.name, chosen.content, chosen.locale, reason, confidence,
                    tuple(dropped), exposure)


def _render(block: Block, reason: Reason, confidence: float, variables: Mapping[str, object],
            chain: tuple[str, ...], dropped: list[Dropped]) -> _Rendered | None:
    locale, key = block.text_for(chain)
    try:
        content = render_block(block, key, variables)
    except ValidationError as exc:
        dropped.append(Dropped(block.name, "render_error", exc.message.split("\n")[0]))
        return None
    return _Rendered(block, reason, confidence, locale, content)


def _fallback(placement: Placement, blocks: Mapping[str, Block], person: Person, now: Millis,
              chain: tuple[str, ...], dropped: list[Dropped]) -> Decision:
    """The default block without personal data: the person has not consented to the placement's purpose."""
    block = blocks.get(placement.default)
    skipped = tuple({"experiment": e.name, "why": "no_consent"} for e in placement.experiments)
    if block is None:
        dropped.append(Dropped(placement.default, "unknown_block", f"no content block {placement.default!r}"))
        return Decision(placement.name, None, None, None, Reason("not_eligible", skipped_experiments=skipped), 0.0,
                        tuple(dropped))
    problem = eligible(block, person, now, personal=False)
    if problem is None:
        _, key = block.text_for(chain)
        static = all(part.template is None for part in block.compiled[key])
        anonymous = {} if static else BlockContext(request=person.render.request,
                                                   locale=person.render.locale).variables()
        chosen = _render(block, Reason("consent_fallback", skipped_experiments=skipped), 1.0, anonymous, chain,
                         dropped)
        if chosen is not None:
            return _decision(placement, chosen, chosen.reason, 1.0, dropped, None)
    else:
        dropped.append(problem)
    return Decision(placement.name, None, None, None, Reason("not_eligible", skipped_experiments=skipped), 0.0,
                    tuple(dropped))


def _own_choice(placement: Placement, blocks: Mapping[str, Block], person: Person, now: Millis,
                models: Mapping[str, ScoringModel], chain: tuple[str, ...], variables: Mapping[str, object],
                dropped: list[Dropped]) -> _Rendered | None:
    """The placement's own choice, rendered, or ``None`` when no block passes its guardrails. Rules are evaluated
    in order and no further than the first match whose block can be shown."""
    failed: dict[str, bool] = {}

    def attempt(name: str, reason: Reason | None, confidence: float) -> _Rendered | None:
        if failed.get(name):
            return None
        block = blocks.get(name)
        if block is None:
            dropped.append(Dropped(name, "unknown_block", f"no content block {name!r}"))
        else:
            problem = eligible(block, person, now)
            if problem is not None:
                dropped.append(problem)
            else:
                chosen = _render(block, reason or Reason("default"), confidence, variables, chain, dropped)
                if chosen is not None:
                    return chosen
        failed[name] = True
        return None

    for index, variant in enumerate(placement.variants):
        if holds(variant.when, person.rules):
            chosen = attempt(variant.block, Reason("rule", variant_index=index, rule=variant.text), 1.0)
            if chosen is not None:
                return chosen
    for offer in _ranked(placement, blocks, person, models, dropped) if placement.rank else ():
        model = offer.model
        reason = Reason("rank", variant_index=offer.position, model=model.name, model_version=model.version,
                        score=offer.probability, value=offer.value, expected_value=offer.expected,
                        model_reasons=offer.reasons)
        chosen = attempt(offer.block, reason, offer.probability)
        if chosen is not None:
            return chosen
    return attempt(placement.default, None, 1.0)


class _Offer(NamedTuple):
    """A scored offer of a ranked placement (its ``Reason`` is made only when it is tried)."""

    expected: float
    position: int
    """Its place in the written order (ties keep it)."""
    block: str
    probability: float
    value: float
    model: ScoringModel
    reasons: TopReasons


def _ranked(placement: Placement, blocks: Mapping[str, Block], person: Person, models: Mapping[str, ScoringModel],
            dropped: list[Dropped]) -> list[_Offer]:
    """The eligible offers by expected value, best first (ties keep the written order)."""
    scored: list[_Offer] = []
    results: dict[str, tuple[float, TopReasons]] = {}
    """Each model scores the person once, however many offers it ranks."""
    for index, candidate in enumerate(placement.rank):
        if candidate.when is not None and not holds(candidate.when, person.rules):
            dropped.append(Dropped(candidate.block, "not_eligible",
                                   f"the offer's rule does not match: {candidate.when_text}"))
            continue
        if candidate.purpose is not None and candidate.purpose not in person.allowed:
            dropped.append(Dropped(candidate.block, "no_consent",
                                   f"model {candidate.model!r} needs consent for {candidate.purpose!r}"))
            continue
        if candidate.audience is not None and not holds(candidate.audience, person.rules):
            dropped.append(Dropped(candidate.block, "not_in_audience",
                                   f"the person is outside model {candidate.model!r}'s audience: "
                                   f"{candidate.audience_text}"))
            continue
        model = models.get(candidate.model)
        if model is None:
            dropped.append(Dropped(candidate.block, "model_unavailable",
                                   f"model {candidate.model!r} has no trained version"))
            continue
        block = blocks.get(candidate.block)
        value = candidate.value if candidate.value is not None else (
            block.value if block is not None and block.value is not None else 1.0)
        result = results.get(candidate.model)
        if result is None:
            values = feature_values(model, person)
            result = results[candidate.model] = (min(1.0, max(0.0, float(model.probability(values)))),
                                                 TopReasons(model, values))
        probability, reasons = result
        scored.append(_Offer(probability * value, index, candidate.block, probability, value, model, reasons))
    scored.sort(key=lambda offer: (-offer.expected, offer.position))
    return scored
