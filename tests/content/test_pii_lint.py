"""The PII print lint against indirect prints: aliases, captures, loops, computed keys, whole roots and filters
(generated shapes and the known bypasses), and the public channels' refusal of computed traits, consent and
segments (SQLite and PostgreSQL for the API path)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from api.support import ApiClient, admin, apply_yaml, assert_error
from hypothesis import given, settings
from hypothesis import strategies as st

from rapport.content.pii import describe, print_policy, print_problems
from rapport.core import NewWorkspace
from rapport.errors import ValidationError
from rapport.templates.render import check_source
from rapport.workspaces.model import DEFAULT_PII_FIELDS

REFUSED_ON_PUSH = ("email", "phone", "address", "ip", "last_name")


def fields(source: str, channel: str = "push", overrides: dict[str, Any] | None = None) -> list[str]:
    return [p.field for p in print_problems({"body": source}, channel, DEFAULT_PII_FIELDS, overrides or {})]


@dataclass(frozen=True)
class Shape:
    """A template being built: text before and after the point where the value is printed, the value's
    expression, whether it is a bare path (a loop takes only a path), and what it holds."""

    before: str
    expression: str
    path: bool
    root: str
    whole: bool
    counter: int = 0

    def name(self) -> tuple[str, int]:
        return f"v{self.counter}", self.counter + 1


def _alias(shape: Shape) -> Shape:
    name, counter = shape.name()
    return Shape(f"{shape.before}{{% assign {name} = {shape.expression} %}}", name, True, shape.root, shape.whole,
                 counter)


def _capture(shape: Shape) -> Shape:
    name, counter = shape.name()
    return Shape(f"{shape.before}{{% capture {name} %}}x{{{{ {shape.expression} }}}}{{% endcapture %}}", name, True,
                 shape.root, shape.whole, counter)


def _filter(shape: Shape, suffix: str) -> Shape:
    return Shape(shape.before, f"{shape.expression} | {suffix}", False, shape.root, shape.whole, shape.counter)


BASES = {
    "direct": lambda r, f: Shape("", f"{r}.{f}", True, r, False),
    "bracket": lambda r, f: Shape("", f"{r}['{f}']", True, r, False),
    "nested": lambda r, f: Shape("", f"{r}.contact.{f}", True, r, False),
    "whole": lambda r, f: Shape("", r, True, r, True),
    "computed_key": lambda r, f: Shape(f"{{% assign k = '{f}' %}}", f"{r}[k]", True, r, True),
    "captured_key": lambda r, f: Shape(f"{{% capture k %}}{f}{{% endcapture %}}", f"{r}[k]", True, r, True),
    "first_pair": lambda r, f: Shape("", f"{r}.first", True, r, True),
    "mapped": lambda r, f: Shape("", f"{r} | map: '{f}'", False, r, False),
    "alias_then_key": lambda r, f: Shape(f"{{% assign t = {r} %}}", f"t.{f}", True, r, False),
}
STEPS = ("alias", "capture", "upcase", "default", "join", "loop_inline")
PRINTERS = (
    "{{{{ {x} }}}}", "{{{{ {x} | append: '!' }}}}", "{{% echo {x} %}}", "{{% liquid\necho {x}\n%}}",
    "{{{{ {x} | default: 'friend' | strip }}}}",
)
PATH_PRINTERS = ("{{% cycle {x}, 'y' %}}", "{{{{ 'Hi ' | append: {x} }}}}", "{{{{ 'Hi ' | prepend: {x} | downcase }}}}")
WRAPPERS = (
    "{x}", "{{% if traits.first_name %}}{x}{{% endif %}}", "{{% unless traits.email %}}{x}{{% endunless %}}",
    "{{% for i in (1..2) %}}{x}{{% endfor %}}",
    "{{% case traits.city %}}{{% when 'x' %}}a{{% else %}}{x}{{% endcase %}}",
    "{{% if traits.email %}}ok{{% elsif true %}}{x}{{% endif %}}", "{{% ifchanged %}}{x}{{% endifchanged %}}",
    "{{% tablerow j in (1..2) %}}{x}{{% endtablerow %}}", "{{% capture outer %}}{x}{{% endcapture %}}{{{{ outer }}}}",
)


@st.composite
def indirect_prints(draw: st.DrawFn) -> tuple[str, str, set[str]]:
    root = draw(st.sampled_from(("traits", "event")))
    field = draw(st.sampled_from(REFUSED_ON_PUSH))
    shape = BASES[draw(st.sampled_from(sorted(BASES)))](root, field)
    loop_end = ""
    for step in draw(st.lists(st.sampled_from(STEPS), max_size=4)):
        if step == "alias":
            shape = _alias(shape)
        elif step == "capture":
            shape = _capture(shape)
        elif step in ("upcase", "default", "join"):
            shape = _filter(shape, {"upcase": "upcase", "default": "default: ''", "join": "join: ', '"}[step])
        elif shape.path and not loop_end:
            name, counter = shape.name()
            shape = Shape(f"{shape.before}{{% for {name} in {shape.expression} %}}", name, True, shape.root,
                          shape.whole, counter)
            loop_end = "{% endfor %}"
    printers = PRINTERS + (PATH_PRINTERS if shape.path else ())
    printed = draw(st.sampled_from(printers)).format(x=shape.expression)
    wrapped = draw(st.sampled_from(WRAPPERS)).format(x=printed)
    noise = draw(st.sampled_from(("", "Hello {{ traits.first_name }}. ", "{% if traits.phone %}{% endif %}\n")))
    source = f"{noise}{shape.before}{wrapped}{loop_end}"
    return source, root, {field, f"{root}.*"}


@settings(max_examples=400, deadline=None)
@given(indirect_prints())
def test_every_indirect_print_of_a_personal_field_is_refused_for_push(case: tuple[str, str, set[str]]) -> None:
    source, _root, expected = case
    assert check_source(source) is None, source
    found = set(fields(source, "push"))
    assert found & expected, f"{source!r} printed {found}"
    assert fields(source, "offline") == []


HARMLESS_PARTS = (
    "{% if traits.email %}We have your address.{% endif %}",
    "{% if traits.email contains '@' %}ok{% endif %}",
    "{% unless event.phone %}no phone{% endunless %}",
    "{% case traits.address %}{% when 'x' %}here{% endcase %}",
    "{{ traits.first_name | default: 'friend' }}",
    "{{ traits.firstName }}",
    "{{ traits.city }}",
    "{{ event.product_name | upcase }}",
    "{{ event.products[0].name }}",
    "{% for p in event.products %}{{ p.product_name }}{% endfor %}",
    "{% assign e = traits.email %}{% if e %}known{% endif %}",
    "{% capture c %}{{ traits.phone }}{% endcapture %}{% if c != '' %}we can call{% endif %}",
    "{% for i in (1..3) %}{{ i }}{% endfor %}",
    "{{ unsubscribe_url }}",
    "{% increment n %}",
    "plain text",
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(HARMLESS_PARTS), min_size=1, max_size=5), st.sampled_from(("push", "sms", "email")))
def test_conditions_and_allowed_fields_pass(pieces: list[str], channel: str) -> None:
    assert fields("\n".join(pieces), channel) == []


@pytest.mark.parametrize(("source", "field", "col"), [
    ("{% assign t = traits %}{{ t.email }}", "email", 27),
    ("{% assign k='email' %}{{ traits[k] }}", "traits.*", 26),
    ("{{ traits | join: ',' }}", "traits.*", 4),
    ("{% for p in traits %}{{ p }}{% endfor %}", "traits.*", 25),
    ("{% capture x %}{{ traits.email }}{% endcapture %}{{ x }}", "email", 53),
    ("{{ traits }}", "traits.*", 4),
    ("{{ event }}", "event.*", 4),
    ("{{ traits | map: 'phone' | first }}", "phone", 4),
    ("{% cycle 'a', traits.email %}", "email", 15),
    ("{{ 'Hi' | append: traits.email }}", "email", 19),
    ("{% for i in (1..2) %}{{ late }}{% assign late = traits.email %}{% endfor %}", "email", 25),
], ids=["alias", "computed-key", "join", "loop", "capture", "root", "event-root", "map", "cycle", "filter-arg",
        "assigned-later-in-a-loop"])
def test_known_bypasses_are_refused_where_they_print(source: str, field: str, col: int) -> None:
    [problem] = print_problems({"body": source}, "push", DEFAULT_PII_FIELDS, {})
    assert (problem.field, problem.line, problem.col) == (field, 1, col)


def test_a_whole_root_names_the_personal_fields_it_holds() -> None:
    [problem] = print_problems({"text": "Hi\n{% for p in traits %}{{ p[1] }}{% endfor %}"}, "push",
                               DEFAULT_PII_FIELDS, {})
    assert (problem.field, problem.path, problem.line, problem.col) == ("traits.*", "p[1]", 2, 25)
    assert "email" in problem.includes and not {"first_name", "firstName"} & set(problem.includes)
    assert describe(problem, "push", {}) == (
        "'text' prints p[1], which may hold any field of traits, at line 2, col 25 of the template: the personal "
        "fields 'email', 'phone', 'name', 'last_name', 'lastName', 'address', 'ip' included; channel 'push' may "
        "print only 'first_name' (workspace setting 'pii_print' changes this)")
    everything = {"push": list(DEFAULT_PII_FIELDS)}
    assert print_problems({"text": "{{ traits }}"}, "push", DEFAULT_PII_FIELDS, everything) == []


@pytest.mark.parametrize("channel", ["web", "app", "inapp"])
@pytest.mark.parametrize(("source", "field"), [
    ("{{ computed.ltv }}", "computed.ltv"),
    ("{{ computed.ltv | default: 0 | plus: 1 }}", "computed.ltv"),
    ("{% assign n = computed.orders_90d %}{{ n }}", "computed.orders_90d"),
    ("{{ computed }}", "computed.*"),
    ("{{ segments | join: ', ' }}", "segments"),
    ("{% for s in segments %}{{ s }}{% endfor %}", "segments"),
    ("{{ segments.size }}", "segments"),
    ("{{ consent.marketing_email }}", "consent.marketing_email"),
    ("{{ 'a' | append: consent['analytics'] }}", "consent.analytics"),
])
def test_public_channels_print_no_computed_trait_consent_or_segment(source: str, field: str, channel: str) -> None:
    assert fields(source, channel) == [field]
    assert fields(source, "email") == fields(source, "push") == []


def test_public_channels_may_test_them_and_print_non_personal_traits() -> None:
    source = ("{% if computed.ltv > 100 %}VIP{% endif %}{% if segments contains 'vip' %}!{% endif %}"
              "{% unless consent.analytics %}.{% endunless %}{{ traits.city }} {{ traits.first_name }}")
    assert fields(source, "web") == []


def test_the_workspace_lists_what_a_public_channel_may_print() -> None:
    source = "{{ computed.ltv }} {{ computed.orders }} {{ segments | join }} {{ consent.analytics }}"
    assert fields(source, "web", {"web": ["first_name", "computed.ltv"]}) == ["computed.orders", "segments",
                                                                              "consent.analytics"]
    assert fields(source, "web", {"web": ["computed.*", "segments", "consent.*"]}) == []
    assert fields("{{ computed }}", "web", {"web": ["computed.ltv"]}) == ["computed.*"]
    assert fields("{{ traits.first_name }}", "web", {"web": ["computed.ltv"]}) == ["first_name"]


def test_pii_print_entries_are_checked() -> None:
    ok = {"web": ["first_name", "computed.ltv", "computed.*", "consent.analytics", "consent.*", "segments"]}
    assert print_policy(ok) == ok
    for entry, says in [("traits.email", "e.g. 'email'"), ("profile.ltv", "expected a personal field name"),
                        ("computed.a.b", "'computed.<name>'")]:
        with pytest.raises(ValidationError) as raised:
            print_policy({"web": [entry]})
        assert raised.value.code == "invalid_settings" and says in raised.value.message


HERO = """\
kind: ContentBlock
name: hero_returning
channel: web
body: |
  <h1>Good to see you again</h1>
  <p>More from {{ computed.last_viewed_category | default: 'our new collection' }}.</p>
"""


def test_a_web_block_printing_a_computed_trait_is_refused_until_the_workspace_lists_it(
        client: ApiClient, workspace: NewWorkspace) -> None:
    [detail] = assert_error(apply_yaml(client, workspace, HERO), 400, "invalid_resource")["details"]
    assert (detail["kind"], detail["name"], detail["field"]) == ("ContentBlock", "hero_returning", "body")
    assert (detail["pii_field"], detail["channel"], detail["template_line"], detail["template_col"]) == (
        "computed.last_viewed_category", "web", 2, 17)
    assert detail["message"] == (
        "'body' prints computed.last_viewed_category at line 2, col 17 of the template; channel 'web' is public "
        "(the write key can ask for any user id's content), so it prints computed traits, consent and segments only "
        "where the workspace setting 'pii_print' lists them for it, e.g. "
        '{"web":["name","first_name","last_name","computed.last_viewed_category"]}')
    listed = admin(client, workspace, "PATCH", "/api/v1/settings", json={"pii_print": {"web": [
        "name", "first_name", "last_name", "computed.last_viewed_category"]}})
    assert listed.status_code == 200, listed.text
    assert apply_yaml(client, workspace, HERO).status_code == 200
    bad = admin(client, workspace, "PATCH", "/api/v1/settings", json={"pii_print": {"web": ["traits.email"]}})
    assert_error(bad, 400, "invalid_settings")


def test_the_documented_errors_are_the_lints() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "content-and-decisions.md").read_text(encoding="utf-8")
    section = doc[doc.index("## The PII print lint"):].split("\n## ")[0]
    documented = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.DOTALL)]
    sources = {"push_hello": ("push", "{% if traits.email %}We have your address.{% endif %}\n"
                                      "Your receipt goes to {{ traits.email }}\n"),
               "hero_returning": ("web", "<h1>Good to see you again</h1><p>More from {{ computed.last_viewed_category "
                                         "| default: 'our new collection' }}.</p>")}
    assert [d["name"] for d in documented] == list(sources)
    for detail in documented:
        channel, source = sources[detail["name"]]
        [problem] = print_problems({"body": source}, channel, DEFAULT_PII_FIELDS, {})
        assert (detail["pii_field"], detail["channel"], detail["template_line"], detail["template_col"]) == (
            problem.field, channel, problem.line, problem.col)
        assert detail["message"] == describe(problem, channel, {})
