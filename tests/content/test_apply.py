"""What blocks, placements and templates say about the workspace, checked when they are applied (SQLite and
PostgreSQL): the PII print lint, the blocks a placement names and the rules it runs."""

from __future__ import annotations

from typing import Any

from api.support import ApiClient, admin, apply_yaml, assert_error

from rapport.content.pii import print_problems
from rapport.core import NewWorkspace
from rapport.workspaces.model import DEFAULT_PII_FIELDS

PUSH_BLOCK = """\
kind: ContentBlock
name: push_hello
channel: push
title: "Hi {{ traits.first_name }}"
body: |
  {% if traits.email %}We have your address.{% endif %}
  Your receipt goes to {{ traits.email }}
"""


def refused(response: Any) -> list[dict[str, Any]]:
    details: list[dict[str, Any]] = assert_error(response, 400, "invalid_resource")["details"]
    return details


def test_an_email_address_in_a_push_block_is_refused_precisely(client: ApiClient, workspace: NewWorkspace) -> None:
    [detail] = refused(apply_yaml(client, workspace, PUSH_BLOCK))
    assert detail["document"] == 1 and detail["kind"] == "ContentBlock" and detail["name"] == "push_hello"
    assert detail["field"] == "body"
    assert (detail["pii_field"], detail["channel"], detail["template_line"]) == ("email", "push", 2)
    assert detail["message"] == ("'body' prints the personal field 'email' (traits.email) at line 2, col 25 of the "
                                 "template; channel 'push' may print only 'first_name' (workspace setting "
                                 "'pii_print' changes this)")


def test_first_name_on_the_web_is_allowed_and_the_policy_can_be_widened(client: ApiClient,
                                                                         workspace: NewWorkspace) -> None:
    web = "kind: ContentBlock\nname: hi\nchannel: web\nbody: \"Hi {{ traits.first_name }} {{ traits.firstName }}\"\n"
    assert apply_yaml(client, workspace, web).status_code == 200
    widened = admin(client, workspace, "PATCH", "/api/v1/settings", json={"pii_print": {"push": ["first_name",
                                                                                                "email"]}})
    assert widened.status_code == 200, widened.text
    assert apply_yaml(client, workspace, PUSH_BLOCK).status_code == 200
    bad = admin(client, workspace, "PATCH", "/api/v1/settings", json={"pii_print": {"pager": ["email"]}})
    assert_error(bad, 400, "invalid_settings")


def test_a_template_printing_a_phone_number_in_an_sms_is_refused(client: ApiClient, workspace: NewWorkspace) -> None:
    text = """\
kind: Channel
name: sms
type: sms
url: http://127.0.0.1:9/sms
account_sid: AC123
token_env: RAPPORT_SMS_TOKEN
from: "+15550000000"
---
kind: Template
name: sms_hi
channel: sms
text: "{% assign p = traits.phone %}Hi {{ traits.first_name }}, we call {{ p }}"
"""
    [detail] = refused(apply_yaml(client, workspace, text))
    assert (detail["kind"], detail["field"], detail["pii_field"], detail["channel"]) == ("Template", "text", "phone",
                                                                                         "sms")
    assert "(traits.phone)" in detail["message"] and "line 1" in detail["message"]


def test_a_placement_names_blocks_of_its_channel(client: ApiClient, workspace: NewWorkspace) -> None:
    text = """\
kind: ContentBlock
name: hero_default
channel: web
body: hi
---
kind: ContentBlock
name: mail_block
channel: email
body: hi
---
kind: Placement
name: home_hero
channel: web
default: hero_defualt
variants:
  - {block: mail_block, when: computed.ordrs_90d > 1}
  - {block: hero_default, when: event.total > 1}
  - {block: hero_default, when: consent.personalisation and context.page == "home"}
"""
    found = {(d["field"], d["message"].split("\n")[0]) for d in refused(apply_yaml(client, workspace, text))}
    assert ("default", "unknown content block 'hero_defualt' (did you mean 'hero_default'?)") in found
    assert ("variants[0].block", "content block 'mail_block' is made for channel 'email', not the placement's "
                                 "'web'") in found
    messages = dict(found)
    assert "unknown computed trait 'ordrs_90d'" in messages["variants[0].when"]
    assert "cannot read event.total" in messages["variants[1].when"]
    assert "unknown consent purpose 'personalisation'" in messages["variants[2].when"]
    assert len(found) == 5


def test_the_lint_reads_outputs_not_conditions() -> None:
    parts = {"body": "{% if traits.phone %}yes{% endif %}{% for x in traits.address %}{{ x }}{% endfor %}",
             "title": "{{ event.email | upcase }}"}
    found = [(p.part, p.field, p.line) for p in print_problems(parts, "push", DEFAULT_PII_FIELDS, {})]
    assert found == [("body", "address", 1), ("title", "email", 1)]
    assert print_problems(parts, "offline", DEFAULT_PII_FIELDS, {}) == []


def test_content_show_lists_what_a_template_reads(client: ApiClient, workspace: NewWorkspace) -> None:
    text = """\
kind: Channel
name: email
type: smtp
host: 127.0.0.1
port: 1025
from: "Shop <hello@shop.example>"
---
kind: Template
name: welcome
channel: email
subject: "Hi {{ traits.first_name | default: 'there' }}"
text: "{% if computed.orders_90d > 0 %}Welcome back{% endif %} {{ traits.email }}"
"""
    assert apply_yaml(client, workspace, text).status_code == 200
    shown = admin(client, workspace, "GET", "/api/v1/content/welcome").json()
    assert shown["kind"] == "Template" and shown["reads"] == ["computed.orders_90d", "traits.email",
                                                              "traits.first_name"]
