"""Channel resource documents: the DESIGN example, each type's fields, secrets only by reference."""

from __future__ import annotations

from typing import Any

import pytest

from rapport.errors import ValidationError
from rapport.resources import parse_documents

pytestmark = pytest.mark.usefixtures("channel_kind")

DESIGN_EXAMPLE = """\
kind: Channel
name: email
type: smtp                # smtp | webhook | sms | push | inapp | offline
host: 127.0.0.1
port: 1025
from: "Shop <hello@shop.example>"
password_env: RAPPORT_SMTP_PASSWORD   # secrets are referenced, never stored in resources
"""
WEBHOOK_FIELDS = ("one of 'kind', 'name', 'type', 'purpose', 'description', 'url', 'secret_env', 'timeout', "
                  "'max_attempts'")
SMTP_FIELDS = ("one of 'kind', 'name', 'type', 'purpose', 'description', 'host', 'port', 'from', 'username', "
               "'password_env', 'starttls', 'timeout'")


def errors(text: str) -> list[tuple[int, str, str]]:
    """(line, field, message) of each error in a text that must be invalid."""
    with pytest.raises(ValidationError) as caught:
        parse_documents(text)
    return [(detail["line"], detail["field"], detail["message"]) for detail in caught.value.details]


def test_the_design_example_applies_with_its_defaults() -> None:
    [channel] = parse_documents(DESIGN_EXAMPLE)
    assert channel.spec == {
        "kind": "Channel", "name": "email", "type": "smtp", "host": "127.0.0.1", "port": 1025,
        "from": "Shop <hello@shop.example>", "password_env": "RAPPORT_SMTP_PASSWORD", "timeout": "30s",
    }


@pytest.mark.parametrize(("body", "spec"), [
    ("type: smtp\nhost: mail.shop.example\nfrom: hello@shop.example\nusername: apikey\n"
     "password_env: SENDGRID_KEY\nstarttls: true\ntimeout: 1m\npurpose: marketing_email\n",
     {"type": "smtp", "purpose": "marketing_email", "host": "mail.shop.example", "port": 25,
      "from": "hello@shop.example", "username": "apikey", "password_env": "SENDGRID_KEY", "starttls": True,
      "timeout": "1m"}),
    ("type: webhook\nurl: https://crm.example/hooks\nsecret_env: CRM_WEBHOOK_SECRET\n",
     {"type": "webhook", "url": "https://crm.example/hooks", "secret_env": "CRM_WEBHOOK_SECRET", "timeout": "10s",
      "max_attempts": 5}),
    ("type: sms\nurl: https://api.twilio.com/2010-04-01\naccount_sid: AC123\nfrom: '+14155550100'\n"
     "token_env: TWILIO_AUTH_TOKEN\npurpose: marketing_sms\n",
     {"type": "sms", "purpose": "marketing_sms", "url": "https://api.twilio.com/2010-04-01", "account_sid": "AC123",
      "from": "+14155550100", "token_env": "TWILIO_AUTH_TOKEN", "timeout": "10s"}),
    ("type: sms\nurl: https://sms.example/v1\nfrom: ShopCo\ntoken_env: SMS_TOKEN\n",
     {"type": "sms", "url": "https://sms.example/v1", "from": "ShopCo", "token_env": "SMS_TOKEN", "timeout": "10s"}),
    ("type: push\nurl: https://fcm.googleapis.com/v1/projects/shop/messages:send\ntoken_env: FCM_TOKEN\n",
     {"type": "push", "url": "https://fcm.googleapis.com/v1/projects/shop/messages:send", "token_env": "FCM_TOKEN",
      "timeout": "10s"}),
    ("type: inapp\npurpose: marketing_inapp\ndescription: The inbox in the shop app\n",
     {"type": "inapp", "purpose": "marketing_inapp", "description": "The inbox in the shop app"}),
    ("type: offline\n", {"type": "offline"}),
], ids=["smtp-full", "webhook", "sms-twilio", "sms-sender-id", "push", "inapp", "offline"])
def test_each_type_with_its_fields(body: str, spec: dict[str, Any]) -> None:
    [channel] = parse_documents(f"kind: Channel\nname: c\n{body}")
    assert channel.spec == {"kind": "Channel", "name": "c", **spec}


@pytest.mark.parametrize(("field", "env"), [("password", "password_env"), ("token", "password_env")])
def test_a_literal_secret_is_refused_with_the_env_form_to_use(field: str, env: str) -> None:
    text = DESIGN_EXAMPLE.replace("password_env: RAPPORT_SMTP_PASSWORD", f"{field}: hunter2")
    assert errors(text) == [(7, field, (
        f"a literal secret in {field!r} is not allowed: resources are versioned and exported, so secrets are "
        f"referenced, never stored; write '{env}: <VARIABLE>' naming the environment variable that holds it"))]


def test_a_literal_secret_on_each_http_type_names_its_env_field() -> None:
    text = ("kind: Channel\nname: hook\ntype: webhook\nurl: https://x.example\nsecret: s3cr3t\nsecret_env: S\n"
            "---\nkind: Channel\nname: fcm\ntype: push\nurl: https://x.example\napi_key: k\ntoken_env: T\n")
    found = errors(text)
    assert [(field, "write '" + message.split("write '")[1].split(":")[0]) for _, field, message in found] == [
        ("secret", "write 'secret_env"), ("api_key", "write 'token_env")]


def test_a_secret_on_a_type_without_secrets() -> None:
    [(_, field, message)] = errors("kind: Channel\nname: box\ntype: inapp\npassword: x\n")
    assert field == "password"
    assert message.endswith("never stored; an 'inapp' channel takes no secret")


def test_unknown_fields_suggest_the_nearest_name_and_other_types_fields_say_whose() -> None:
    text = ("kind: Channel\nname: hook\ntype: webhook\nurl: https://x.example\nsecret_env: S\n"
            "max_atempts: 3\nhost: smtp.example\n")
    assert errors(text) == [
        (6, "max_atempts", f"unknown field 'max_atempts' (did you mean 'max_attempts'?); expected {WEBHOOK_FIELDS}"),
        (7, "host", f"field 'host' does not apply to type 'webhook' (it belongs to 'smtp'); expected {WEBHOOK_FIELDS}"),
    ]


def test_an_unknown_type_is_named_with_a_hint() -> None:
    assert errors("kind: Channel\nname: e\ntype: smpt\nhost: h\n") == [
        (3, "type", "unknown type 'smpt' (did you mean 'smtp'?); expected one of 'smtp', 'webhook', 'sms', 'push', "
                    "'inapp', 'offline'")]


def test_missing_type() -> None:
    [(line, field, message)] = errors("kind: Channel\nname: e\n")
    assert (line, field) == (1, "type")
    assert message.startswith("missing required field 'type'; expected one of 'smtp'")


@pytest.mark.parametrize(("line", "field", "message"), [
    ("port: 70000", "port", "invalid port 70000; expected a TCP port, a whole number from 1 to 65535"),
    ("port: true", "port", "invalid port true; expected a TCP port, a whole number from 1 to 65535"),
    ("from: Shop", "from",
     "invalid from 'Shop'; expected a sender such as 'Shop <hello@shop.example>' or 'hello@shop.example'"),
    ("password_env: $SECRET", "password_env",
     "invalid password_env '$SECRET'; expected the name of an environment variable holding the secret, "
     "e.g. 'RAPPORT_SMTP_PASSWORD'"),
    ("starttls: yes", "starttls", "invalid starttls 'yes'; expected true or false"),
    ("timeout: 30", "timeout", "invalid timeout 30; expected a duration such as '30d': a whole number and one of "
                               "'s', 'm' (minutes), 'h', 'd', 'w'"),
    ("purpose: Marketing Email", "purpose",
     "invalid purpose 'Marketing Email'; expected a consent purpose name; sending through this channel needs it "
     "(lower-case letters, digits and '_', starting with a letter, at most 63 characters)"),
], ids=["port-range", "port-bool", "from", "env-name", "starttls", "timeout", "purpose"])
def test_smtp_field_errors(line: str, field: str, message: str) -> None:
    text = "kind: Channel\nname: email\ntype: smtp\nhost: h\nfrom: a@b.example\npassword_env: P\n"
    key = line.split(":")[0]
    text = "\n".join(row for row in text.splitlines() if not row.startswith(f"{key}:")) + f"\n{line}\n"
    found = errors(text)
    assert [(f, m) for _, f, m in found] == [(field, message)]


def test_a_username_needs_a_password() -> None:
    assert errors("kind: Channel\nname: e\ntype: smtp\nhost: h\nfrom: a@b.example\nusername: u\n") == [
        (6, "username", "'username' is set but 'password_env' is missing; SMTP AUTH needs the password too")]


@pytest.mark.parametrize(("url", "ok"), [
    ("https://crm.example/hooks", True), ("http://127.0.0.1:8080/h", True), ("ftp://crm.example", False),
    ("crm.example/hooks", False), ("https://", False), ("https://crm.example/a b", False),
])
def test_webhook_urls(url: str, ok: bool) -> None:
    text = f"kind: Channel\nname: hook\ntype: webhook\nurl: '{url}'\nsecret_env: S\n"
    if ok:
        assert parse_documents(text)[0].spec["url"] == url
    else:
        assert errors(text) == [(4, "url", f"invalid url {url!r}; expected the receiver's endpoint: an absolute "
                                           "http:// or https:// URL")]


@pytest.mark.parametrize("sender", ["14155550100", "+0123", "TooLongSenderName", "12345"])
def test_sms_senders_must_be_e164_or_a_short_sender_id(sender: str) -> None:
    text = f"kind: Channel\nname: sms\ntype: sms\nurl: https://x.example\nfrom: '{sender}'\ntoken_env: T\n"
    [(_, field, message)] = errors(text)
    assert field == "from"
    assert message.startswith(f"invalid from {sender!r}; expected a phone number in E.164 form")


def test_webhook_attempts_are_bounded() -> None:
    text = "kind: Channel\nname: hook\ntype: webhook\nurl: https://x.example\nsecret_env: S\nmax_attempts: 0\n"
    assert errors(text) == [(6, "max_attempts", "invalid max_attempts 0; expected a whole number of attempts from 1 "
                                                "to 20")]


def test_required_fields_of_a_type_are_named() -> None:
    assert [(f, m) for _, f, m in errors("kind: Channel\nname: p\ntype: push\n")] == [
        ("url", "missing required field 'url'; expected the provider's send endpoint: an absolute http:// or "
                "https:// URL"),
        ("token_env", "missing required field 'token_env'; expected the name of an environment variable holding "
                      "the secret, e.g. 'RAPPORT_SMTP_PASSWORD'"),
    ]


def test_smtp_fields_are_listed_for_a_misspelling() -> None:
    [(_, _, message)] = errors(DESIGN_EXAMPLE + "hots: x\n")
    assert message == f"unknown field 'hots' (did you mean 'host'?); expected {SMTP_FIELDS}"
