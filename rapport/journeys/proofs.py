"""Proofs of a workspace's messages: a template previewed as a given profile, and test sends of a journey's
steps to seed addresses.

A preview renders strictly: a value the template outputs that the profile lacks is an error naming the
variable and its line (``template_undefined``, HTTP 422), so an author finds the gap before a customer does.

A test send renders a send step's template the way the journey would (leniently, as a profile or with sample
data), prefixes its subject or title with ``[Test]`` and hands it to the step's channel for each seed address
of the kind that channel reaches (email addresses for SMTP, phone numbers for SMS, device tokens for push,
profile ids for the in-app inbox and offline lists). Each message carries its own test idempotency key, never
the journey's, and none is written to the journey's send log, so journey statistics do not count it. The send
gate is not applied to seed addresses (they are the team's, not the customers'): the response lists every
check that was not applied and why, and the workspace's audit log keeps a ``journey.test_send`` entry.

Seed lists live in the workspace settings (``seed_lists``), shared by every journey: a name maps to a list of
email addresses and phone numbers, or to an object by address kind (``email``, ``phone``, ``push_token``,
``profile``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

import httpx

from rapport.channels.base import Message, Receipt
from rapport.consent.decide import current_state
from rapport.errors import NotFoundError, Terminal, Transient, ValidationError
from rapport.identity.normalize import normalize
from rapport.journeys.model import Journey, SendStep, walk
from rapport.profiles.service import ProfileReader
from rapport.resources.builtin.channel import E164
from rapport.storage.base import Conn
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import segments as segments_sql
from rapport.storage.sql import workspaces as ws_sql
from rapport.templates.render import Parts, PartValue, TemplateContext, fields_read, preview, render
from rapport.types import Json, JsonObject, WorkspaceId
from rapport.workspaces.runtime import WorkspaceRuntime

if TYPE_CHECKING:
    from rapport.core import Rapport

ADDRESS_KINDS: Final = ("email", "phone", "push_token", "profile")
ADDRESS_KIND_OF_CHANNEL: Final = {"smtp": "email", "sms": "phone", "push": "push_token", "inapp": "profile",
                                  "offline": "profile", "webhook": "profile"}
"""Per channel type, the kind of seed address it sends to."""
MAX_SEED_ADDRESSES: Final = 50
"""Addresses one seed list (or one test send) may name: a proof goes to the team, not to an audience."""
TEST_PREFIX: Final = "[Test] "
PARALLEL_SENDS: Final = 8
"""Test messages handed to channels at once."""
PROFILE_IDENTIFIERS: Final = ("profile_id", "user_id", "anonymous_id", "email", "phone", "device_id")
"""How a preview or a test send names the profile to render as."""
INERT_UNSUBSCRIBE: Final = "#unsubscribe-link-of-the-recipient"
"""What ``unsubscribe_url`` renders as in a test send: a seed recipient must not unsubscribe the profile the
message was rendered as."""
NOT_APPLIED: Final[tuple[tuple[str, str], ...]] = (
    ("consent", "seed addresses are not people of the workspace; no consent is checked for the channel's purpose"),
    ("subscriptions", "unsubscribes and subscription groups are not checked"),
    ("suppressions", "hard-bounce and complaint suppressions are not checked"),
    ("suppression_rules", "SuppressionRule resources are not evaluated"),
    ("frequency_caps", "test sends neither count against nor are held by frequency caps"),
    ("quiet_hours", "test sends go out at once, whatever the hour"),
    ("arbitration", "other journeys' claims on the person are not considered"),
    ("unsubscribe_link", "unsubscribe_url renders as a placeholder and no List-Unsubscribe header is sent, so a seed "
                         "recipient cannot unsubscribe the profile the message was rendered as"),
    ("tracking", "no open pixel or click tracking; opens and clicks of test sends are not counted"),
    ("journey_log", "nothing is written to the journey's send log: journey statistics do not count test sends"),
)
"""The send gate's checks (DESIGN 4.8) and the journey's own bookkeeping that a test send does not apply."""

_PATH_PART: Final = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


class Unprocessable(ValidationError):
    """A well-formed request the template cannot be rendered for (a missing value in a strict preview)."""

    status = 422


# --- seed addresses ------------------------------------------------------------------------------------------

def seed_addresses(value: Json, where: str) -> dict[str, list[str]]:
    """Seed addresses by kind (``ADDRESS_KINDS``) from a list of email addresses and E.164 phone numbers, or
    from an object by kind; raises ``ValidationError`` naming ``where`` and the bad entry."""
    expected = ('a list of email addresses and phone numbers such as ["qa@shop.example", "+15551234567"], or an '
                f"object by kind ({', '.join(ADDRESS_KINDS)}) of lists")
    out: dict[str, list[str]] = {kind: [] for kind in ADDRESS_KINDS}
    if isinstance(value, list):
        for index, item in enumerate(value):
            kind = _kind_of(item)
            if kind is None:
                raise ValidationError(f"{where}[{index}] is {item!r}, neither an email address nor a phone number in "
                                      "E.164 form; for device tokens and profile ids use the object form "
                                      '{"push_token": [...], "profile": [...]}', code="invalid_seed_list")
            _add(out, kind, str(item), f"{where}[{index}]")
    elif isinstance(value, dict):
        for kind, items in value.items():
            if kind not in ADDRESS_KINDS:
                raise ValidationError(f"{where} has unknown address kind {kind!r}; expected one of "
                                      f"{', '.join(ADDRESS_KINDS)}", code="invalid_seed_list")
            if not isinstance(items, list):
                raise ValidationError(f"{where}.{kind} must be a list of addresses", code="invalid_seed_list")
            for index, item in enumerate(items):
                _add(out, kind, item, f"{where}.{kind}[{index}]")
    else:
        raise ValidationError(f"{where} must be {expected}", code="invalid_seed_list")
    total = sum(len(items) for items in out.values())
    if total == 0:
        raise ValidationError(f"{where} names no address; expected {expected}", code="invalid_seed_list")
    if total > MAX_SEED_ADDRESSES:
        raise ValidationError(f"{where} names {total} addresses; at most {MAX_SEED_ADDRESSES} are allowed",
                              code="invalid_seed_list")
    return {kind: items for kind, items in out.items() if items}


def _kind_of(item: Json) -> str | None:
    if not isinstance(item, str):
        return None
    if "@" in item:
        return "email"
    return "phone" if E164.fullmatch(item.strip()) else None


def _add(out: dict[str, list[str]], kind: str, item: Json, where: str) -> None:
    if not isinstance(item, str) or not item.strip():
        raise ValidationError(f"{where} must be a non-empty string", code="invalid_seed_list")
    text = item.strip()
    if kind == "email":
        found = normalize("email", text)
        if found is None:
            raise ValidationError(f"{where} is {item!r}, not an email address", code="invalid_seed_list")
        text = found.value
    elif kind == "phone" and not E164.fullmatch(text):
        raise ValidationError(f"{where} is {item!r}, not a phone number in E.164 form such as '+15551234567'",
                              code="invalid_seed_list")
    if text not in out[kind]:
        out[kind].append(text)


def seed_lists(value: Json) -> JsonObject:
    """The ``seed_lists`` workspace setting checked and normalized: name → addresses by kind."""
    if not isinstance(value, dict):
        raise ValidationError("'seed_lists' must be an object of named lists, e.g. "
                              '{"qa": ["qa@shop.example", "+15551234567"]}', code="invalid_settings")
    out: JsonObject = {}
    for name, addresses in value.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            raise ValidationError(f"seed list name {name!r} must be 1 to 64 letters, digits, '_', '.' or '-'",
                                  code="invalid_settings")
        try:
            found = seed_addresses(addresses, f"seed_lists.{name}")
        except ValidationError as exc:
            raise ValidationError(exc.message, code="invalid_settings") from None
        out[name] = {kind: list(items) for kind, items in found.items()}
    return out


# --- what a template reads -----------------------------------------------------------------------------------

def sample_context(parts: Parts, event: Mapping[str, Json]) -> TemplateContext:
    """A context holding a readable placeholder (``[first_name]``) for every value the template reads, for a
    message rendered without a profile; ``event`` overrides the event's placeholders."""
    roots: dict[str, JsonObject] = {"traits": {}, "computed": {}, "event": {}}
    for path in sorted(fields_read(parts)):
        steps = [(m.group(1), m.group(2)) for m in _PATH_PART.finditer(path)]
        if len(steps) < 2 or steps[0][0] not in roots or "".join(m.group(0) for m in _PATH_PART.finditer(path)) \
                != path:
            continue
        _place(roots[str(steps[0][0])], steps[1:])
    return TemplateContext(roots["traits"], roots["computed"], {**roots["event"], **event}, {}, (),
                           INERT_UNSUBSCRIBE)


def _place(node: JsonObject, steps: list[tuple[str | None, str | None]]) -> None:
    """Put a placeholder at the path ``steps`` (names, and ``[n]`` list indexes) under ``node``; an indexed list
    gets one item."""
    name, tail = steps[0][0], steps[1:]
    if name is None:
        return
    if not tail:
        node.setdefault(name, f"[{name}]")
        return
    if tail[0][1] is not None:  # name[n]...
        rest = tail[1:]
        if not rest:
            node.setdefault(name, [f"[{name}]"])
            return
        items = node.get(name)
        if not (isinstance(items, list) and items and isinstance(items[0], dict)):
            items = [{}]
            node[name] = items
        first = items[0]
        assert isinstance(first, dict)
        _place(first, rest)
        return
    child = node.get(name)
    if not isinstance(child, dict):
        child = {}
        node[name] = child
    _place(child, tail)


def profile_context(conn: Conn, rt: WorkspaceRuntime, rapport: Rapport, profile_id: str,
                    event: Mapping[str, Json], unsubscribe_url: str) -> TemplateContext:
    """What a template reads for ``profile_id`` now: traits, computed traits, consent, segments, and ``event``."""
    now = rapport.clock.now_ms()
    reader = ProfileReader(conn, rt, rapport.keyring)
    entries = [consent_sql.ledger_entry(r) for r in consent_sql.entries(conn, rt.id, [profile_id])]
    consent = {name: d.allowed for name, d in current_state(entries, rt.catalog, now).items()}
    segments = tuple(sorted(str(r[1]) for r in segments_sql.current(conn, rt.id, [profile_id])))
    return TemplateContext(reader.traits(profile_id), reader.computed(profile_id, now), dict(event), consent,
                           segments, unsubscribe_url)


def profile_of(conn: Conn, rt: WorkspaceRuntime, rapport: Rapport, id_type: str, value: str) -> str:
    """The live profile named by ``profile_id`` or by one of its identifiers."""
    reader = ProfileReader(conn, rt, rapport.keyring)
    return reader.live_id(value) if id_type == "profile_id" else reader.find(id_type, value)


def _identifier(body: Mapping[str, Json], keys: Sequence[str]) -> tuple[str, str] | None:
    given = [(key, body[key]) for key in keys if body.get(key) is not None]
    if len(given) > 1:
        raise ValidationError(f"give one of {', '.join(keys)}, not {len(given)}", code="invalid_request")
    if not given:
        return None
    key, value = given[0]
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{key!r} must be a non-empty string", code="invalid_request")
    return key, value.strip()


def _event(body: Mapping[str, Json]) -> JsonObject:
    event = body.get("event", {})
    if not isinstance(event, dict):
        raise ValidationError("'event' must be an object of the triggering event's properties",
                              code="invalid_request")
    return event


def _check_keys(body: Json, allowed: Sequence[str], what: str) -> JsonObject:
    if not isinstance(body, dict):
        raise ValidationError(f"the {what} body must be a JSON object", code="invalid_request")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ValidationError(f"unknown field(s) {', '.join(map(repr, unknown))} in the {what}; expected "
                              f"{', '.join(allowed)}", code="invalid_request")
    return body


def template_parts(rt: WorkspaceRuntime, name: str) -> Parts:
    parts = rt.templates.get(name)
    if parts is None:
        known = ", ".join(sorted(rt.templates)) or "none yet"
        raise NotFoundError(f"no template {name!r} (known: {known})", code="template_not_found")
    return parts


def preview_template(rapport: Rapport, ws: WorkspaceId, name: str, body: Json) -> JsonObject:
    """Template ``name`` rendered strictly as the profile the body names (``profile_id`` or an identifier such
    as ``user_id``), with the body's ``event`` properties; without a profile, with sample values. A value the
    template outputs that the profile lacks raises ``Unprocessable`` naming it, its part and its line."""
    request = _check_keys(body, (*PROFILE_IDENTIFIERS, "event"), "preview")
    rt = rapport.runtime(ws)
    parts = template_parts(rt, name)
    who = _identifier(request, PROFILE_IDENTIFIERS)
    event = _event(request)

    def read(conn: Conn) -> tuple[str | None, TemplateContext]:
        if who is None:
            return None, sample_context(parts, event)
        pid = profile_of(conn, rt, rapport, *who)
        return pid, profile_context(conn, rt, rapport, pid, event, INERT_UNSUBSCRIBE)

    profile_id, context = rapport.db.read(read)
    try:
        rendered = preview(parts, context)
    except ValidationError as exc:
        raise Unprocessable(exc.message, code=exc.code, details=exc.details) from None
    return {"template": name, "profile_id": profile_id, "sample_data": profile_id is None,
            "parts": _json_parts(rendered), "reads": sorted(fields_read(parts))}


def _json_parts(parts: Mapping[str, PartValue]) -> JsonObject:
    return {name: value if isinstance(value, str) else dict(value) for name, value in parts.items()}


# --- test sends ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TestSendRequest:
    """What to send: ``step`` (one send step, else every one), to ``addresses`` by kind (from ``to`` or the
    seed list ``seed_list``), rendered as ``as_profile`` (an identifier) or with sample data."""

    steps: tuple[SendStep, ...]
    addresses: Mapping[str, Sequence[str]]
    seed_list: str | None
    as_profile: tuple[str, str] | None
    event: JsonObject


TEST_SEND_FIELDS: Final = ("step", "to", "seed_list", "as_profile", "as_user_id", "event")


def test_send_request(rt: WorkspaceRuntime, journey: Journey, body: Json) -> TestSendRequest:
    """The checked test-send request for ``journey`` (see ``TEST_SEND_FIELDS``)."""
    request = _check_keys(body, TEST_SEND_FIELDS, "test send")
    sends = [step for step in walk(journey.steps) if isinstance(step, SendStep)]
    if not sends:
        raise ValidationError(f"journey {journey.name!r} has no send step to test", code="invalid_request")
    wanted = request.get("step")
    if wanted is None:
        steps = tuple(sends)
    else:
        found = [step for step in sends if step.id == str(wanted)]
        if not found:
            raise ValidationError(f"journey {journey.name!r} has no send step {wanted!r}; expected one of "
                                  f"{', '.join(repr(s.id) for s in sends)}", code="invalid_request")
        steps = tuple(found)
    to, seed = request.get("to"), request.get("seed_list")
    if (to is None) == (seed is None):
        raise ValidationError("give either 'to' (addresses) or 'seed_list' (the name of a seed list in the workspace "
                              "settings)", code="invalid_request")
    if seed is not None:
        lists = rt.settings.seed_lists
        if not isinstance(seed, str) or seed not in lists:
            known = ", ".join(sorted(lists)) or "none yet; add one with PATCH /api/v1/settings {\"seed_lists\": ...}"
            raise NotFoundError(f"no seed list {seed!r} (known: {known})", code="seed_list_not_found")
        stored = lists[seed]
        assert isinstance(stored, dict)
        addresses = seed_addresses(stored, f"seed_lists.{seed}")
    else:
        addresses = seed_addresses(to, "to")
    profile = _identifier({"profile_id": request.get("as_profile"), "user_id": request.get("as_user_id")},
                          ("profile_id", "user_id"))
    return TestSendRequest(steps, addresses, seed if isinstance(seed, str) else None, profile, _event(request))


async def test_send(rapport: Rapport, ws: WorkspaceId, name: str, body: Json, actor: str, *,
                    client: httpx.AsyncClient | None = None) -> JsonObject:
    """Send the journey's steps' messages to seed addresses as the module docstring describes; returns what went
    where, what was skipped and which gate checks were not applied."""
    from rapport.journeys.reports import Journeys
    from rapport.journeys.service import Delivery, build_channels

    rt = rapport.runtime(ws)
    journey = Journeys(rapport, ws).journey(name)
    request = test_send_request(rt, journey, body)
    run_id = rapport.clock.new_id("test")
    for step in request.steps:
        template_parts(rt, step.template)

    def read(conn: Conn) -> tuple[str | None, dict[str, TemplateContext]]:
        if request.as_profile is None:
            return None, {s.template: sample_context(rt.templates[s.template], request.event) for s in request.steps}
        pid = profile_of(conn, rt, rapport, *request.as_profile)
        context = profile_context(conn, rt, rapport, pid, request.event, INERT_UNSUBSCRIBE)
        return pid, {s.template: context for s in request.steps}

    profile_id, contexts = await asyncio.to_thread(rapport.db.read, read)
    settings = rapport.settings
    used = replace(rt, channels={s.channel: rt.channels[s.channel] for s in request.steps if s.channel in rt.channels})
    channels = build_channels(rapport.db, used, rapport.clock, Delivery(settings.base_url, settings.environ), client,
                              rapport.keyring)
    planned: list[tuple[JsonObject, Message | None]] = []
    skipped: list[JsonObject] = []
    for step in request.steps:
        kind = ADDRESS_KIND_OF_CHANNEL.get(str(rt.channels.get(step.channel, {}).get("type")))
        where = {"step": step.id, "channel": step.channel, "template": step.template}
        if step.channel not in channels or kind is None:
            skipped.append({**where, "reason": f"channel {step.channel!r} is not configured"})
            continue
        targets = request.addresses.get(kind, ())
        if not targets:
            skipped.append({**where, "reason": f"no seed address of kind {kind!r}, which channel {step.channel!r} "
                                               "sends to"})
            continue
        try:
            parts = render(rt.templates[step.template], contexts[step.template], strict=False)
        except ValidationError as exc:
            skipped.append({**where, "reason": f"the template does not render: {exc.message}"})
            continue
        for index, to in enumerate(targets):
            key = f"{run_id}:{step.id}:{index}"
            entry: JsonObject = {**where, "to": to, "idempotency_key": key}
            try:
                planned.append((entry, _test_message(key, to, parts)))
            except ValidationError as exc:
                planned.append(({**entry, "status": "failed", "error": exc.message}, None))

    gate = asyncio.Semaphore(PARALLEL_SENDS)

    async def deliver(entry: JsonObject, message: Message | None) -> JsonObject:
        if message is None:
            return entry
        try:
            async with gate:
                receipt: Receipt = await channels[str(entry["channel"])].send(message)
        except (Transient, Terminal) as exc:
            kind = "transient" if isinstance(exc, Transient) else "terminal"
            return {**entry, "status": "failed", "error": f"{kind}: {exc.message}"}
        return {**entry, "status": "sent", "provider_id": receipt.provider_id}

    sends = list(await asyncio.gather(*(deliver(entry, message) for entry, message in planned)))
    not_applied = [{"check": check, "why": why} for check, why in NOT_APPLIED]
    out: JsonObject = {
        "test_send_id": run_id, "journey": journey.name, "version": journey.version,
        "as_profile": profile_id, "sample_data": profile_id is None, "seed_list": request.seed_list,
        "sends": sends, "skipped": skipped, "not_applied": not_applied,
        "sent": sum(1 for s in sends if s["status"] == "sent"),
        "failed": sum(1 for s in sends if s["status"] == "failed"),
    }
    record = {k: out[k] for k in ("test_send_id", "version", "as_profile", "seed_list", "sends", "skipped")}
    record["not_applied"] = [check for check, _ in NOT_APPLIED]
    now = rapport.clock.now_ms()
    await asyncio.to_thread(rapport.db.write, lambda conn: ws_sql.audit(
        conn, ws, actor, "journey.test_send", journey.name, record, now))
    return out


def _test_message(key: str, to: str, parts: Mapping[str, PartValue]) -> Message:
    """The channel message of rendered parts, marked as a test: ``[Test]`` before the subject or title, or
    before the text of a message that has neither (SMS, offline task)."""
    def text(*names: str) -> str | None:
        for name in names:
            value = parts.get(name)
            if isinstance(value, str):
                return value
        return None

    subject, body = text("subject", "title"), text("text", "body")
    if subject is not None:
        subject = TEST_PREFIX + subject
    elif body is not None:
        body = TEST_PREFIX + body
    data = parts.get("data")
    return Message(key, to, subject=subject, text=body, html=text("html"),
                   data=dict(data) if isinstance(data, Mapping) else {})


__all__ = [
    "ADDRESS_KINDS",
    "NOT_APPLIED",
    "TestSendRequest",
    "Unprocessable",
    "preview_template",
    "profile_context",
    "sample_context",
    "seed_addresses",
    "seed_lists",
    "test_send",
    "test_send_request",
]
