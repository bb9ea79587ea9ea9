"""Template documents: the DESIGN example, the parts of each channel type, Liquid errors at apply time."""

from __future__ import annotations

from typing import Any

import pytest

from rapport.errors import ValidationError
from rapport.resources import parse_documents

# Importing the kind module registers the Template kind (the builtin package does not list it yet).
from rapport.resources.builtin.template import MESSAGE_TYPE_OF_CHANNEL, message_types, parts_problem
from rapport.templates import fields_read, render
from rapport.templates.render import TemplateContext

DESIGN_EXAMPLE = """\
kind: Template
name: cart_reminder
channel: email
subject: "{{ traits.first_name | default: 'Hi' }}, your cart is waiting"
text: |
  {% if computed.orders_90d > 0 %}Welcome back!{% else %}Still thinking it over?{% endif %}
  {{ event.product_name }} is still in your cart.
"""


def errors_of(text: str) -> list[dict[str, Any]]:
    """The error details of a text that must not apply."""
    with pytest.raises(ValidationError) as caught:
        parse_documents(text)
    assert caught.value.code == "invalid_resource"
    return caught.value.details


def head(channel: str = "email") -> str:
    return f"kind: Template\nname: t\nchannel: {channel}\n"


def test_the_design_example_applies_and_renders() -> None:
    [doc] = parse_documents(DESIGN_EXAMPLE)
    assert doc.spec["channel"] == "email"
    parts = {key: doc.spec[key] for key in ("subject", "text")}
    out = render(parts, TemplateContext(computed={"orders_90d": 0}, event={"product_name": "Red shoes"}), strict=False)
    assert out == {"subject": "Hi, your cart is waiting",
                   "text": "Still thinking it over?\nRed shoes is still in your cart.\n"}
    assert fields_read(parts) == {"traits.first_name", "computed.orders_90d", "event.product_name"}


@pytest.mark.parametrize("body", [
    "subject: s\nhtml: <p>h</p>\n",
    "subject: s\ntext: t\n",
    "subject: s\nhtml: <p>h</p>\ntext: t\n",
    "text: your code\n",
    "title: t\nbody: b\ndata: {url: '/cart/{{ event.cart_id }}'}\n",
    "body: b\n",
    "title: t\nbody: b\n",
], ids=["email-html", "email-text", "email-both", "sms-or-offline", "push", "inapp", "push-or-inapp"])
def test_each_message_shape_is_accepted(body: str) -> None:
    [doc] = parse_documents(head() + body + "tags: [promo, cart]\nlocale: de-CH\n")
    assert doc.spec["tags"] == ["promo", "cart"]


@pytest.mark.parametrize(("parts", "types"), [
    ({"subject", "text"}, ("email",)),
    ({"text"}, ("sms", "offline")),
    ({"title", "body"}, ("push", "inapp")),
    ({"title", "body", "data"}, ("push",)),
    ({"body"}, ("inapp",)),
    ({"subject"}, ()),
    ({"html"}, ()),
])
def test_message_types_of_parts(parts: set[str], types: tuple[str, ...]) -> None:
    assert message_types(frozenset(parts)) == types


def test_parts_checked_against_the_channel_type() -> None:
    assert parts_problem(frozenset({"subject", "text"}), MESSAGE_TYPE_OF_CHANNEL["smtp"]) is None
    assert parts_problem(frozenset({"text"}), "email") == "email needs 'subject'"
    assert parts_problem(frozenset({"subject"}), "email") == "email needs 'html' or 'text' (or both) besides 'subject'"
    assert parts_problem(frozenset({"title", "body", "data"}), "inapp") == "inapp takes 'body', 'title', not 'data'"
    assert parts_problem(frozenset({"body"}), "push") == "push needs 'title'"
    assert "webhook" not in MESSAGE_TYPE_OF_CHANNEL


def test_a_liquid_syntax_error_names_field_line_and_problem() -> None:
    text = head() + "subject: hi\ntext: |\n  fine\n  {% if computed.orders_90d > 0 %}\n  never closed\n"
    [error] = errors_of(text)
    assert error["field"] == "text"
    assert error["line"] == 7
    assert error["message"] == ("invalid Liquid in text at line 2, col 1 of the template: "
                                "'{% if %}' is never closed; expected '{% endif %}' after it")


def test_an_unknown_filter_on_a_one_line_part_is_reported_on_its_line() -> None:
    [error] = errors_of(head() + "subject: \"{{ traits.first_name | capitalise }}\"\ntext: t\n")
    assert (error["field"], error["line"]) == ("subject", 4)
    assert "line 1, col 24 of the template: unknown filter 'capitalise'" in error["message"]


def test_push_data_values_are_checked_each() -> None:
    [error] = errors_of(head("push") + "title: t\nbody: b\ndata:\n  ok: x\n  url: '{{ event.id '\n")
    assert error["field"] == "data.url"
    assert error["line"] == 8
    assert "invalid Liquid in data.url" in error["message"]


def test_including_another_template_is_refused_at_apply_time() -> None:
    [error] = errors_of(head() + "subject: s\nhtml: \"{% include 'header' %}\"\n")
    assert error["field"] == "html"
    assert "tag 'include' is not available" in error["message"]


@pytest.mark.parametrize(("body", "field", "message"), [
    ("html: <p>x</p>\n", "html", "as email: email needs 'subject'"),
    ("subject: s\n", "subject", "as email: email needs 'html' or 'text' (or both) besides 'subject'"),
    ("subject: s\ntext: t\nbody: b\n", "subject", "parts 'body', 'subject', 'text' make no message type"),
    ("title: t\ndata: {a: b}\n", "title", "as push: push needs 'body'"),
], ids=["html-without-subject", "subject-alone", "email-and-push-mixed", "push-without-body"])
def test_parts_that_make_no_message_type_are_refused(body: str, field: str, message: str) -> None:
    [error] = errors_of(head() + body)
    assert error["field"] == field
    assert message in error["message"]


def test_a_template_without_parts_is_refused() -> None:
    [error] = errors_of(head())
    assert error["message"].startswith("a template needs its message parts")


@pytest.mark.parametrize(("extra", "field"), [
    ("locale: English\n", "locale"),
    ("tags: [promo, promo]\n", "tags[1]"),
    ("subjet: s\n", "subjet"),
], ids=["bad-locale", "duplicate-tag", "misspelt-part"])
def test_other_fields_are_checked(extra: str, field: str) -> None:
    errors = errors_of(head() + "subject: s\ntext: t\n" + extra)
    assert field in [error["field"] for error in errors]


def test_channel_is_required() -> None:
    [error] = errors_of("kind: Template\nname: t\ntext: hi\n")
    assert error["field"] == "channel"
    assert error["message"].startswith("missing required field 'channel'")
