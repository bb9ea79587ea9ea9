"""Channels, templates and journeys applied together: each names things that must exist and fit
(a template's parts make a message of its channel's type; a send goes through its template's channel),
checked over the whole applied state, on SQLite and PostgreSQL."""

from __future__ import annotations

from api.support import ApiClient, apply_yaml, assert_error
from rapport.core import NewWorkspace

CHANNELS = """
kind: Channel
name: email
type: smtp
host: 127.0.0.1
port: 1025
from: "Shop <hello@shop.example>"
---
kind: Channel
name: push
type: push
url: http://127.0.0.1:9/v1/projects/shop/messages:send
token_env: RAPPORT_PUSH_TOKEN
---
kind: Channel
name: hooks
type: webhook
url: http://127.0.0.1:9/hook
secret_env: RAPPORT_HOOK_SECRET
"""
TEMPLATE = """
kind: Template
name: cart_reminder
channel: email
subject: "{{ traits.first_name | default: 'Hi' }}, your cart is waiting"
text: "{{ event.product_name }} is still in your cart."
"""


def journey(send_channel: str = "email", template: str = "cart_reminder") -> str:
    return f"""
kind: Journey
name: cart_abandonment
purpose: marketing_email
entry: {{event: Cart Added}}
steps:
  - delay: 15m
  - send: {{channel: {send_channel}, template: {template}}}
"""


def details(response: object) -> list[tuple[str, str]]:
    body = assert_error(response, 400, "invalid_resource")  # type: ignore[arg-type]
    return [(d["field"], d["message"]) for d in body["details"]]


def test_a_journey_with_its_channel_and_template_applies(client: ApiClient, workspace: NewWorkspace) -> None:
    response = apply_yaml(client, workspace, "---\n".join([CHANNELS, TEMPLATE, journey()]))
    assert response.status_code == 200, response.text
    assert {c["kind"] for c in response.json()["changes"]} == {"Channel", "Template", "Journey"}


def test_unknown_names_are_refused_with_the_nearest(client: ApiClient, workspace: NewWorkspace) -> None:
    found = details(apply_yaml(client, workspace, "---\n".join([CHANNELS, TEMPLATE, journey(template="cart_remindr")])))
    assert len(found) == 1 and found[0][0] == "steps[1].send.template"
    assert "unknown Template 'cart_remindr' (did you mean 'cart_reminder'?)" in found[0][1]
    orphan = TEMPLATE.replace("channel: email", "channel: emial")
    found = details(apply_yaml(client, workspace, "---\n".join([CHANNELS, orphan])))
    assert found == [("channel", "unknown channel 'emial' (did you mean 'email'?)")]


def test_parts_and_channels_must_fit(client: ApiClient, workspace: NewWorkspace) -> None:
    for_push = TEMPLATE.replace("channel: email", "channel: push")
    [(field, message)] = details(apply_yaml(client, workspace, "---\n".join([CHANNELS, for_push])))
    assert field == "channel" and "push needs" in message
    for_hook = TEMPLATE.replace("channel: email", "channel: hooks")
    [(field, message)] = details(apply_yaml(client, workspace, "---\n".join([CHANNELS, for_hook])))
    assert "webhook" in message
    [(field, message)] = details(apply_yaml(client, workspace, "---\n".join([CHANNELS, TEMPLATE, journey("push")])))
    assert field == "steps[1].send.channel"
    assert "template 'cart_reminder' is written for channel 'email'" in message


def test_a_channel_still_in_use_cannot_be_removed(client: ApiClient, workspace: NewWorkspace) -> None:
    assert apply_yaml(client, workspace, "---\n".join([CHANNELS, TEMPLATE, journey()])).status_code == 200
    renamed = CHANNELS.replace("name: email", "name: mail")
    response = client.post("/api/v1/apply?prune=true", content="---\n".join([renamed, TEMPLATE, journey()]).encode(),
                           headers={"Content-Type": "application/yaml",
                                    "Authorization": f"Bearer {workspace.admin_token}"})
    found = details(response)
    assert ("channel", "unknown channel 'email' (did you mean 'mail'?)") in found
