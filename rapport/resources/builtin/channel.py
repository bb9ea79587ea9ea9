"""Channel: a way to reach people (an SMTP server, a webhook, an SMS or push provider, the in-app inbox,
offline task lists) and the consent purpose that sending through it needs.

Secrets never live in a resource: resources are versioned, diffed and exported, so a password written
in one would spread to every copy. A channel names the environment variable that holds each secret
(``password_env``, ``secret_env``, ``token_env``), read when the channel is built."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

from rapport.resources.checks import boolean, duration, one_of, reference, text
from rapport.resources.fields import (
    Check,
    Field,
    FieldErrors,
    check_fields,
    did_you_mean,
    optional,
    quoted,
    required,
    show,
)
from rapport.resources.kinds import KindSpec, register
from rapport.types import Json, JsonObject

TYPES: Final = ("smtp", "webhook", "sms", "push", "inapp", "offline")
MEDIUM: Final = {"smtp": "email", "webhook": "webhook", "sms": "sms", "push": "push", "inapp": "inapp",
                 "offline": "offline"}
"""The medium a channel type reaches people by, as ``ConsentPurpose.channel`` names it."""

ENV_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_HELP: Final = "the name of an environment variable holding the secret, e.g. 'RAPPORT_SMTP_PASSWORD'"
E164: Final = re.compile(r"\+[1-9][0-9]{6,14}")
SENDER_ID: Final = re.compile(r"[A-Za-z0-9 ]{1,11}")
SECRET_FIELDS: Final = {
    "password": "password_env", "token": "token_env", "secret": "secret_env", "auth_token": "token_env",
    "api_key": "token_env", "apikey": "token_env", "access_token": "token_env",
}
"""Literal secret fields people write by habit, and the ``_env`` field to use instead."""


def env_name() -> Check:
    """The name of an environment variable (the secret itself stays out of the resource)."""
    def run(value: Json, ctx: FieldErrors) -> Json:
        ok = isinstance(value, str) and ENV_PATTERN.fullmatch(value)
        return value if ok else ctx.reject(value, ENV_HELP)

    return Check(ENV_HELP, run)


def http_url(what: str) -> Check:
    """An absolute ``http://`` or ``https://`` URL with a host."""
    expected = f"{what}: an absolute http:// or https:// URL"

    def run(value: Json, ctx: FieldErrors) -> Json:
        if isinstance(value, str):
            parts = urlsplit(value)
            if parts.scheme in ("http", "https") and parts.hostname and not any(c.isspace() for c in value):
                return value
        return ctx.reject(value, expected)

    return Check(expected, run)


def email_sender() -> Check:
    """A ``From`` value with an address: ``Shop <hello@shop.example>`` or ``hello@shop.example``."""
    expected = "a sender such as 'Shop <hello@shop.example>' or 'hello@shop.example'"

    def run(value: Json, ctx: FieldErrors) -> Json:
        # Imported on use: the address rule lives with the email channel that writes the header.
        from rapport.channels.email import sender_address

        if not isinstance(value, str):
            return ctx.reject(value, expected)
        try:
            sender_address(value)
        except ValueError:
            return ctx.reject(value, expected)
        return value

    return Check(expected, run)


def sms_sender() -> Check:
    """An E.164 number (``+15551234567``) or an alphanumeric sender id of at most 11 characters."""
    expected = "a phone number in E.164 form such as '+15551234567', or a sender id of 1 to 11 letters and digits"

    def run(value: Json, ctx: FieldErrors) -> Json:
        ok = isinstance(value, str) and (E164.fullmatch(value) or
                                          (SENDER_ID.fullmatch(value) and not value.isdigit() and value.strip()))
        return value if ok else ctx.reject(value, expected)

    return Check(expected, run)


def whole_between(low: int, high: int, expected: str) -> Check:
    """A whole number from ``low`` to ``high``; booleans are not numbers."""
    def run(value: Json, ctx: FieldErrors) -> Json:
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        return value if ok else ctx.reject(value, expected)

    return Check(expected, run)


COMMON: Final[dict[str, Field]] = {
    "type": required(one_of(*TYPES)),
    "purpose": optional(reference("a consent purpose name; sending through this channel needs it")),
    "description": optional(text()),
}
BY_TYPE: Final[dict[str, dict[str, Field]]] = {
    "smtp": {
        "host": required(text("an SMTP server host name or IP address")),
        "port": optional(whole_between(1, 65535, "a TCP port, a whole number from 1 to 65535"), default=25),
        "from": required(email_sender()),
        # With 'password_env' alone, the sender's address is the AUTH user name, as most providers expect.
        "username": optional(text("the SMTP AUTH user name")),
        "password_env": optional(env_name()),
        "starttls": optional(boolean()),
        "timeout": optional(duration(), default="30s"),
    },
    "webhook": {
        "url": required(http_url("the receiver's endpoint")),
        "secret_env": required(env_name()),
        "timeout": optional(duration(), default="10s"),
        "max_attempts": optional(whole_between(1, 20, "a whole number of attempts from 1 to 20"), default=5),
    },
    "sms": {
        "url": required(http_url("the provider's API base, e.g. 'https://api.twilio.com/2010-04-01'")),
        "account_sid": optional(text("the provider account id")),
        "from": required(sms_sender()),
        "token_env": required(env_name()),
        "timeout": optional(duration(), default="10s"),
    },
    "push": {
        "url": required(http_url("the provider's send endpoint")),
        "token_env": required(env_name()),
        "timeout": optional(duration(), default="10s"),
    },
    "inapp": {},
    "offline": {},
}
ALL_FIELDS: Final = tuple(dict.fromkeys([*COMMON, *(name for fields in BY_TYPE.values() for name in fields)]))


def validate(doc: JsonObject, ctx: FieldErrors) -> JsonObject:
    """Check a Channel: the fields of its ``type`` only, with secrets referenced by variable name."""
    kind = doc.get("type")
    fields = {**COMMON, **BY_TYPE[kind]} if isinstance(kind, str) and kind in BY_TYPE else None
    allowed = ("kind", "name", *(fields or ALL_FIELDS))
    for key in doc:
        if key not in allowed:
            _unknown(str(key), kind if fields else None, allowed, ctx)
    known = {key: value for key, value in doc.items() if key in allowed}
    if fields is None:
        # Without a valid type only the shared fields can be checked; the type's error says why.
        return check_fields({key: known[key] for key in known if key in ("kind", "name", *COMMON)}, ctx, COMMON,
                            implicit=("kind", "name"))
    spec = check_fields(known, ctx, fields, implicit=("kind", "name"))
    if kind == "smtp" and doc.get("username") is not None and doc.get("password_env") is None:
        ctx.add("'username' is set but 'password_env' is missing; SMTP AUTH needs the password too",
                "'password_env' beside 'username'", "username")
    return spec


def _unknown(key: str, kind: str | None, allowed: tuple[str, ...], ctx: FieldErrors) -> None:
    """The error for a field the channel's type does not take: a literal secret, another type's field,
    or a misspelling."""
    expected = f"one of {quoted(allowed)}"
    env = SECRET_FIELDS.get(key.lower())
    if env is not None:
        usable = env if env in allowed or kind is None else next((f for f in allowed if f.endswith("_env")), None)
        how = (f"write '{usable}: <VARIABLE>' naming the environment variable that holds it" if usable
               else f"an {kind!r} channel takes no secret")
        ctx.add(f"a literal secret in {key!r} is not allowed: resources are versioned and exported, so secrets "
                f"are referenced, never stored; {how}", f"'{usable}'" if usable else expected, key)
        return
    owners = [name for name, fields in BY_TYPE.items() if key in fields]
    if kind is not None and owners:
        ctx.add(f"field {key!r} does not apply to type {kind!r} (it belongs to {quoted(owners)}); "
                f"expected {expected}", expected, key)
        return
    ctx.add(f"unknown field {show(key)}{did_you_mean(key, allowed)}; expected {expected}", expected, key)


CHANNEL: Final = register(KindSpec("Channel", validate, ALL_FIELDS))
