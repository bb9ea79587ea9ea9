"""Template: a message in Liquid for one channel, with the parts its channel type needs.

The parts depend on the type of the channel the template names (email: ``subject`` and ``html`` and/or
``text``; SMS: ``text``; push: ``title``, ``body``, optional ``data``; in-app: optional ``title`` and
``body``; offline: ``text``). A document is checked on its own, before the Channel it names is known, so
it must fit at least one message type; ``parts_problem`` checks it against the channel's actual type once
both resources are known. Every Liquid part is parsed when the resource is applied: a syntax error names
the field, the line and what is wrong.
"""

from __future__ import annotations

import re
from typing import Final, Literal

from rapport.resources.checks import list_of, mapping, reference, text
from rapport.resources.fields import INVALID, Check, FieldErrors, check_document, optional, quoted, required
from rapport.resources.kinds import KindSpec, register
from rapport.templates.render import check_source
from rapport.types import Json, JsonObject

MessageType = Literal["email", "sms", "push", "inapp", "offline"]

MESSAGE_PARTS: Final[dict[MessageType, tuple[frozenset[str], frozenset[str]]]] = {
    "email": (frozenset({"subject"}), frozenset({"html", "text"})),
    "sms": (frozenset({"text"}), frozenset()),
    "push": (frozenset({"title", "body"}), frozenset({"data"})),
    "inapp": (frozenset({"body"}), frozenset({"title"})),
    "offline": (frozenset({"text"}), frozenset()),
}
"""Per message type: the parts it requires and the parts it allows besides (email also needs one of
``html``/``text``)."""

MESSAGE_TYPE_OF_CHANNEL: Final[dict[str, MessageType]] = {
    "smtp": "email",
    "sms": "sms",
    "push": "push",
    "inapp": "inapp",
    "offline": "offline",
}
"""The message a Channel of each ``type`` sends; a ``webhook`` channel posts the event, not a template."""

PARTS: Final = ("subject", "html", "text", "title", "body", "data")
_LOCALE: Final = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")
LOCALE_HELP: Final = "a BCP 47 language tag such as 'en' or 'de-CH'"


def liquid(expected: str = "Liquid template text") -> Check:
    """Liquid source, kept as written; a syntax error is reported at its line inside the YAML document."""

    def run(value: Json, ctx: FieldErrors) -> Json:
        if not isinstance(value, str) or not value.strip():
            return ctx.reject(value, expected)
        problem = check_source(value)
        if problem is None:
            return value
        key_line = ctx.line_of(ctx.path)
        # A multi-line part is a block scalar ('text: |') whose first line follows the key's line.
        line = key_line + problem.line if "\n" in value.rstrip("\n") else key_line
        ctx.add(f"invalid Liquid in {ctx.label} at line {problem.line}, col {problem.col} of the template: "
                f"{problem.message}", expected, line=line)
        return INVALID

    return Check(expected, run)


def locale() -> Check:
    """A language tag, lower-case language first."""

    def run(value: Json, ctx: FieldErrors) -> Json:
        ok = isinstance(value, str) and _LOCALE.fullmatch(value)
        return value if ok else ctx.reject(value, LOCALE_HELP)

    return Check(LOCALE_HELP, run)


FIELDS: Final = {
    "channel": required(reference("the name of a Channel resource")),
    "description": optional(text()),
    "locale": optional(locale()),
    "tags": optional(list_of(reference("a tag"), unique=True)),
    "subject": optional(liquid("Liquid text for the email subject")),
    "html": optional(liquid("Liquid HTML for the email body (values are HTML-escaped)")),
    "text": optional(liquid("Liquid text: the plain-text email body, the SMS or the offline task")),
    "title": optional(liquid("Liquid text for the push or in-app title")),
    "body": optional(liquid("Liquid text for the push or in-app body")),
    "data": optional(mapping(liquid("Liquid text"))),
}


def parts_problem(parts: frozenset[str], message_type: MessageType) -> str | None:
    """Why ``parts`` do not make a message of ``message_type``, or ``None`` when they do."""
    needs, allows = MESSAGE_PARTS[message_type]
    missing = sorted(needs - parts)
    extra = sorted(parts - needs - allows)
    if missing:
        return f"{message_type} needs {quoted(missing)}"
    if extra:
        return f"{message_type} takes {quoted(sorted(needs | allows))}, not {quoted(extra)}"
    if message_type == "email" and not parts & {"html", "text"}:
        return "email needs 'html' or 'text' (or both) besides 'subject'"
    return None


def message_types(parts: frozenset[str]) -> tuple[MessageType, ...]:
    """The message types ``parts`` make, in ``MESSAGE_PARTS`` order."""
    return tuple(kind for kind in MESSAGE_PARTS if parts_problem(parts, kind) is None)


def validate(doc: JsonObject, ctx: FieldErrors) -> JsonObject:
    """Check a Template: each part parses, and the parts together make some channel type's message."""
    spec = check_document(doc, ctx, FIELDS)
    given = frozenset(part for part in PARTS if doc.get(part) is not None)
    if message_types(given):
        return spec
    expected = ("the parts of one message type: email {subject, html and/or text}, sms {text}, "
                "push {title, body, data?}, inapp {title?, body}, offline {text}")
    if not given:
        ctx.add(f"a template needs its message parts; expected {expected}", expected)
        return spec
    problems = "; ".join(f"as {kind}: {parts_problem(given, kind)}" for kind in _closest(given))
    ctx.add(f"parts {quoted(sorted(given))} make no message type ({problems}); expected {expected}", expected,
            sorted(given, key=PARTS.index)[0])
    return spec


def _closest(parts: frozenset[str]) -> list[MessageType]:
    """The message types sharing the most parts with ``parts``: the ones the author most likely meant."""
    def overlap(kind: MessageType) -> int:
        needs, allows = MESSAGE_PARTS[kind]
        return len(parts & (needs | allows))

    best = max(overlap(kind) for kind in MESSAGE_PARTS)
    return [kind for kind in MESSAGE_PARTS if overlap(kind) == best]


TEMPLATE: Final = register(KindSpec("Template", validate, tuple(FIELDS)))
