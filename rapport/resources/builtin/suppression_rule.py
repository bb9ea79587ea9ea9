"""SuppressionRule: a rule in the rule language that keeps messages from a person when it holds.

The send gate checks the workspace's suppression rules after consent, subscriptions and bounce or
complaint suppression (DESIGN 4.8). A rule applies to the messages ``applies_to`` selects (every
message when it is absent or empty): each list given narrows the selection, ``tags`` to messages
carrying at least one of the tags, ``channels`` and ``journeys`` to messages on those channels or of
those journeys. ``rule`` is true when the message must not go out; besides profile paths it may read
``message.<property>`` (a property of the event that started the message's journey, such as the product
it is about), also inside ``where=``, so it can compare the person's events with the message::

    kind: SuppressionRule
    name: recently_bought
    applies_to: {tags: [promotion]}
    rule: days_since("Order Completed", where=event.product_id == message.product_id) <= 14

The rule is evaluated when the message is about to go out, over that person's stored events
(``rapport.journeys.suppression``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from rapport.errors import ValidationError
from rapport.resources.checks import list_of, nested, reference, text
from rapport.resources.fields import INVALID, Check, FieldErrors, did_you_mean, optional, quoted, required
from rapport.resources.kinds import KindSpec, register
from rapport.rules import Node, parse, paths, segments, to_text
from rapport.types import Json, JsonObject

RULE_HELP: Final = ('a rule that is true when the message must not go out, e.g. days_since("Order Completed", '
                    "where=event.product_id == message.product_id) <= 14")
READABLE: Final = ("computed", "consent", "event", "message", "traits")
"""The path roots a suppression rule reads: the person's profile, the message and its entry event."""


def suppression_rule_text() -> Check:
    """Rule text that may read ``message.<property>``; ``context.`` (a decision's request) has no meaning here."""

    def run(value: Json, ctx: FieldErrors) -> Json:
        if not (isinstance(value, str) and value.strip()):
            return ctx.reject(value, RULE_HELP)
        try:
            node = parse(value, message=True)
        except ValidationError as exc:
            ctx.add(f"invalid rule in {ctx.label}: {exc.message}", RULE_HELP)
            return INVALID
        for path in sorted(paths(node), key=lambda p: p.span.start):
            if path.root not in READABLE:
                ctx.add(f"invalid rule in {ctx.label}: line {path.span.line}, col {path.span.col}: a suppression rule "
                        f"cannot read {to_text(path)} (request context exists only when a decision is made); "
                        f"expected a path starting with one of {quoted(READABLE)}", RULE_HELP)
                return INVALID
        return value

    return Check(RULE_HELP, run)


FIELDS: Final = {
    "description": optional(text()),
    "applies_to": optional(nested({
        "tags": optional(list_of(reference("a message tag, as send steps set with 'tags:'"), unique=True)),
        "channels": optional(list_of(reference("a Channel name"), unique=True)),
        "journeys": optional(list_of(reference("a Journey name"), unique=True)),
    })),
    "rule": required(suppression_rule_text()),
}


@dataclass(frozen=True, slots=True)
class AppliesTo:
    """Which messages a rule concerns; an empty set does not narrow."""

    tags: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    journeys: frozenset[str] = frozenset()

    def matches(self, journey: str, channel: str, tags: frozenset[str]) -> bool:
        """Whether a message of ``journey`` on ``channel`` carrying ``tags`` is one the rule concerns."""
        return ((not self.journeys or journey in self.journeys)
                and (not self.channels or channel in self.channels)
                and (not self.tags or bool(self.tags & tags)))


@dataclass(frozen=True, slots=True)
class SuppressionRuleDef:
    """A ``SuppressionRule`` resource ready for the gate: its parsed rule and the messages it applies to."""

    name: str
    rule: Node
    text: str
    applies_to: AppliesTo = AppliesTo()
    description: str = ""

    @classmethod
    def from_spec(cls, spec: JsonObject) -> SuppressionRuleDef:
        """The rule of a validated spec."""
        scope = spec.get("applies_to") or {}
        assert isinstance(scope, dict)

        def names(key: str) -> frozenset[str]:
            found = scope.get(key) or []
            return frozenset(str(v) for v in found) if isinstance(found, list) else frozenset()

        return cls(str(spec["name"]), parse(str(spec["rule"]), message=True), str(spec["rule"]),
                   AppliesTo(names("tags"), names("channels"), names("journeys")), str(spec.get("description") or ""))


def reference_problems(specs: Mapping[tuple[str, str], JsonObject]) -> Iterator[tuple[str, str, str, str]]:
    """``(kind, rule name, field, message)`` for each name a SuppressionRule of the final resources ``specs`` (by kind
    and name) uses that does not exist: journeys and channels of ``applies_to``, computed traits, consent
    purposes and segments of ``rule``."""
    # Imported on use: the catalogs of traits and purposes are needed only when rules are applied.
    from rapport.consent.purposes import Catalog
    from rapport.profiles.builtins import BUILTIN_TRAITS

    def of(kind: str) -> set[str]:
        return {name for k, name in specs if k == kind}

    known = {"journeys": of("Journey"), "channels": of("Channel")}
    traits = of("ComputedTrait") | {t.name for t in BUILTIN_TRAITS}
    purposes = set(Catalog.from_resources([s for (k, _), s in specs.items() if k == "ConsentPurpose"]).names())
    found_segments = of("Segment")
    for (kind, name), spec in sorted(specs.items()):
        if kind != "SuppressionRule":
            continue
        scope = spec.get("applies_to") or {}
        for key, names in known.items():
            listed = scope.get(key) if isinstance(scope, dict) else None
            for index, item in enumerate(listed if isinstance(listed, list) else []):
                if item not in names:
                    yield kind, name, f"applies_to.{key}[{index}]", _unknown(key[:-1], str(item), names)
        try:
            rule = parse(str(spec.get("rule")), message=True)
        except ValidationError:
            continue  # reported by the document's own check
        for path in sorted(paths(rule), key=lambda p: p.span.start):
            at = f"line {path.span.line}, col {path.span.col}: "
            if path.root == "computed" and path.parts[0] not in traits:
                yield kind, name, "rule", at + _unknown("computed trait", path.parts[0], traits)
            elif path.root == "consent" and path.parts[0] not in purposes:
                yield kind, name, "rule", at + _unknown("consent purpose", path.parts[0], purposes)
        for segment in sorted(segments(rule) - found_segments):
            yield kind, name, "rule", f"in_segment({segment!r}): " + _unknown("segment", segment, found_segments)


def _unknown(what: str, name: str, names: set[str]) -> str:
    options = f"one of {quoted(sorted(names))}" if names else f"a {what} name, but none is defined"
    return f"unknown {what} {name!r}{did_you_mean(name, names)}; expected {options}"


SUPPRESSION_RULE: Final = register(KindSpec.from_fields("SuppressionRule", FIELDS))
