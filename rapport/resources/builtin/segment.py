"""Segment: the profiles a rule selects, with its governance (owner, purpose, sensitivity, refresh
cadence), its place in an exclusive group (priority, default) and its fixtures (profiles it must or
must not select).

Membership is kept live on every change and on time; ``refresh: 1d`` also has the batch engine
recompute the segment with SQL that often and reconcile it with the live state (without it, the
batch refresh runs when a version is first applied and on demand)."""

from __future__ import annotations

from typing import Final

from rapport.durations import parse_duration
from rapport.resources.checks import boolean, duration, list_of, nested, one_of, reference, rule, text, whole_number
from rapport.resources.fields import INVALID, Check, FieldErrors, check_document, optional, show
from rapport.resources.kinds import KindSpec, register
from rapport.types import Json, JsonObject

SENSITIVITIES: Final = ("low", "normal", "high")
MIN_REFRESH_MS: Final = 60_000
"""``refresh`` (how often the batch engine reconciles the segment) is at least a minute."""
FIXTURE_HELP: Final = ("a profile: 'user_id:<id>', 'anonymous_id:<id>', 'email:<address>', "
                       "'phone:<+E.164 number>', 'device_id:<id>' or a profile id 'prf_...'")


def fixture() -> Check:
    """A profile named by one of its identifiers (``user_id:u1``) or by its id (``prf_...``)."""
    def run(value: Json, ctx: FieldErrors) -> Json:
        # Imported on use: the fixture format lives with the segment engine that checks fixtures.
        from rapport.segments.fixtures import parse_reference

        if isinstance(value, dict) and len(value) == 1:
            [(key, item)] = value.items()
            ctx.add(f"invalid {ctx.label} a mapping; write {f'{key}:{item}'!r} with no space after ':'; "
                    f"expected {FIXTURE_HELP}", FIXTURE_HELP)
            return INVALID
        if not isinstance(value, str):
            return ctx.reject(value, FIXTURE_HELP)
        try:
            parse_reference(value)
        except ValueError as exc:
            ctx.add(f"invalid {ctx.label} {show(value)}: {exc}; expected {FIXTURE_HELP}", FIXTURE_HELP)
            return INVALID
        return value

    return Check(FIXTURE_HELP, run)


FIXTURE_LIST: Final = list_of(fixture(), unique=True)
FIELDS: Final = {
    "description": optional(text()),
    "owner": optional(text("a team or person, e.g. 'crm'")),
    "purpose": optional(reference("a consent purpose name; members without it are not activatable")),
    "sensitivity": optional(one_of(*SENSITIVITIES), default="normal"),
    "group": optional(reference("an exclusive group name: a profile sits in at most one segment of a group")),
    "priority": optional(whole_number(0), default=0),
    "default": optional(boolean(), default=False),
    "rule": optional(rule('a rule, e.g. computed.orders_90d == 0 and exists(traits.email)')),
    "refresh": optional(duration()),
    "fixtures": optional(nested({"match": optional(FIXTURE_LIST), "no_match": optional(FIXTURE_LIST)})),
}


def validate(doc: JsonObject, ctx: FieldErrors) -> JsonObject:
    """Check a Segment; ``priority`` and ``default`` only mean something inside a ``group``, and
    fixtures test a ``rule``."""
    spec = check_document(doc, ctx, FIELDS)
    if spec.get("default") and not spec.get("group"):
        ctx.add("'default: true' makes the fallback segment of a group; it needs 'group'", "a 'group' name",
                "group")
    if doc.get("rule") is None and not spec.get("default"):
        expected = FIELDS["rule"].check.expected
        ctx.add(f"missing field 'rule' (only a group's default segment may omit it); expected {expected}",
                expected, "rule")
    refresh = spec.get("refresh")
    if isinstance(refresh, str) and parse_duration(refresh) < MIN_REFRESH_MS:
        ctx.add(f"'refresh: {refresh}' is too often; the batch refresh recomputes the whole segment, so it runs"
                " at most every minute (live evaluation already follows every change); expected '1m' or more",
                "a duration of at least '1m'", "refresh")
    fixtures = doc.get("fixtures")
    if isinstance(fixtures, dict):
        _check_fixtures(fixtures, doc.get("rule") is None and bool(spec.get("default")), ctx.at("fixtures"))
    return spec


def _check_fixtures(fixtures: JsonObject, ruleless_default: bool, ctx: FieldErrors) -> None:
    """A profile cannot be expected on both sides, and a default segment without a rule has none to test
    (``fixtures`` as written: indexes count every entry, valid or not)."""
    if ruleless_default:
        ctx.add("fixtures test the segment's rule; a default segment without 'rule' takes whoever the rest of "
                "its group leaves, so it cannot have fixtures", "a 'rule' beside 'fixtures'")
    match = fixtures.get("match")
    no_match = fixtures.get("no_match")
    if not isinstance(match, list) or not isinstance(no_match, list):
        return
    for index, item in enumerate(no_match):
        if isinstance(item, str) and item in match:
            ctx.at("no_match", index).add(
                f"{show(item)} is listed in both fixtures.match[{match.index(item)}] and fixtures.no_match[{index}]; "
                "a profile cannot both match and not match", "each profile in one list only")


SEGMENT: Final = register(KindSpec("Segment", validate, tuple(FIELDS)))
