"""Rendering Liquid templates: defaults, strict preview, autoescape, sandbox limits, syntax errors, analysis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapport.errors import ValidationError
from rapport.templates import TemplateContext, check_source, compile_part, fields_read, preview, render
from rapport.templates.render import LOOP_ITERATION_LIMIT, OUTPUT_LIMIT

CART = {
    "subject": "{{ traits.first_name | default: 'Hi' }}, your cart is waiting",
    "text": "{% if computed.orders_90d > 0 %}Welcome back!{% else %}Still thinking it over?{% endif %}\n"
            "{{ event.product_name }} is still in your cart.",
}


def person(**traits: object) -> TemplateContext:
    return TemplateContext(traits=traits, computed={"orders_90d": 2}, event={"product_name": "Red shoes"},
                           consent={"marketing_email": True}, segments=("vip",),
                           unsubscribe_url="https://shop.example/u?t=a&b=c")


def test_the_design_example_renders_with_and_without_the_trait() -> None:
    assert render(CART, person(first_name="Ada"), strict=False) == {
        "subject": "Ada, your cart is waiting",
        "text": "Welcome back!\nRed shoes is still in your cart.",
    }
    assert render(CART, person(), strict=False)["subject"] == "Hi, your cart is waiting"


def test_default_fills_in_missing_values_even_in_strict_preview() -> None:
    assert preview({"subject": "{{ traits.first_name | default: 'friend' }}"}, person()) == {"subject": "friend"}


def test_sending_renders_a_missing_value_as_nothing() -> None:
    assert render({"text": "[{{ traits.nickname }}]"}, person(), strict=False) == {"text": "[]"}


def test_preview_names_the_missing_variable_and_where_it_is_read() -> None:
    with pytest.raises(ValidationError) as caught:
        preview({"subject": "Hi", "text": "Hello\n  {{ traits.nickname }}!"}, person())
    error = caught.value
    assert error.code == "template_undefined"
    [detail] = error.details
    assert detail["variable"] == "traits.nickname"
    assert (detail["field"], detail["line"], detail["col"]) == ("text", 2, 6)
    assert "'traits.nickname' is undefined" in error.message
    assert "  2 |   {{ traits.nickname }}!\n    |      ^" in error.message


def test_preview_of_a_missing_event_property_names_it() -> None:
    with pytest.raises(ValidationError) as caught:
        preview({"text": "{{ event.cart_id }}"}, person())
    assert caught.value.details[0]["variable"] == "event.cart_id"


def test_context_exposes_consent_segments_and_unsubscribe_url() -> None:
    parts = {"text": "{% if consent.marketing_email %}ok{% endif %} {{ segments | join: ',' }} {{ unsubscribe_url }}"}
    assert preview(parts, person()) == {"text": "ok vip https://shop.example/u?t=a&b=c"}


def test_html_parts_are_autoescaped_and_text_parts_are_not() -> None:
    context = person(first_name="<script>alert(1)</script>")
    out = render({"subject": "{{ traits.first_name }}", "html": "<p>{{ traits.first_name }}</p>"
                                                                "<a href=\"{{ unsubscribe_url }}\">x</a>",
                  "text": "{{ traits.first_name }}"}, context, strict=False)
    assert out["html"] == ("<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
                           '<a href="https://shop.example/u?t=a&amp;b=c">x</a>')
    assert out["text"] == out["subject"] == "<script>alert(1)</script>"


@given(st.text(max_size=40))
def test_no_trait_value_can_inject_markup_into_html(value: str) -> None:
    out = render({"html": "<p>{{ traits.v }}</p>"}, person(v=value), strict=False)["html"]
    assert isinstance(out, str)
    inner = out.removeprefix("<p>").removesuffix("</p>")
    assert "<" not in inner and ">" not in inner and '"' not in inner


def test_push_data_values_are_rendered_per_key() -> None:
    parts = {"title": "Cart", "body": "{{ event.product_name }}", "data": {"url": "/cart/{{ event.cart_id }}"}}
    context = TemplateContext(event={"product_name": "Shoes", "cart_id": "c1"})
    assert render(parts, context, strict=True) == {"title": "Cart", "body": "Shoes", "data": {"url": "/cart/c1"}}


def test_loop_iteration_limit_is_enforced() -> None:
    within = "{% for i in (1..N) %}.{% endfor %}".replace("N", str(LOOP_ITERATION_LIMIT))
    assert render({"text": within}, person(), strict=False)["text"] == "." * LOOP_ITERATION_LIMIT
    nested = "{% for i in (1..100) %}{% for j in (1..100) %}.{% endfor %}{% endfor %}"
    with pytest.raises(ValidationError) as caught:
        render({"text": nested}, person(), strict=False)
    assert caught.value.code == "template_limit"
    assert "loop iteration limit" in caught.value.message


def test_output_size_limit_is_enforced() -> None:
    with pytest.raises(ValidationError) as caught:
        render({"text": "{% for i in (1..900) %}{{ event.blob }}{% endfor %}"},
               TemplateContext(event={"blob": "x" * (OUTPUT_LIMIT // 800)}), strict=False)
    assert caught.value.code == "template_limit"
    assert "output stream limit" in caught.value.message


@pytest.mark.parametrize("tag", ["include", "render"])
def test_templates_cannot_load_other_templates(tag: str) -> None:
    problem = check_source(f"Hi\n{{% {tag} 'secrets' %}}")
    assert problem is not None
    assert (problem.line, problem.col) == (2, 4)
    assert f"tag {tag!r} is not available" in problem.message


@pytest.mark.parametrize(("source", "line", "col", "message"), [
    ("a\n{% if traits.x %}\nno end", 2, 1, "'{% if %}' is never closed; expected '{% endif %}' after it"),
    ("{% for p in event.items %}{% if p %}{% endif %}", 1, 1, "'{% for %}' is never closed"),
    ("a\nb {{ traits.x | shout }}", 2, 17, "unknown filter 'shout'"),
    ("ok {{ y }}\n  {{ x | }}", 2, 3, "expected word, found end of expression"),
    ("{% if x %}{% endfor %}", 1, 14, "unexpected tag 'endfor'"),
    ("{% bogus %}", 1, 4, "unexpected tag 'bogus'"),
], ids=["unclosed-if", "unclosed-for", "unknown-filter", "unfinished-filter", "stray-end", "unknown-tag"])
def test_syntax_errors_name_line_column_and_problem(source: str, line: int, col: int, message: str) -> None:
    problem = check_source(source)
    assert problem is not None
    assert (problem.line, problem.col) == (line, col)
    assert message in problem.message


def test_compiling_a_broken_part_raises_with_the_part_name() -> None:
    with pytest.raises(ValidationError) as caught:
        compile_part("subject", "{{ traits.first_name | shout }}")
    assert caught.value.code == "template_syntax"
    assert caught.value.details[0]["field"] == "subject"
    assert "line 1, col 24: unknown filter 'shout'" in caught.value.message


def test_valid_sources_have_no_problem() -> None:
    for source in [*CART.values(), "{% raw %}{{ not liquid }}{% endraw %}", "{{ x | upcase | truncate: 5 }}"]:
        assert check_source(source) is None


def test_fields_read_lists_the_global_paths_a_template_reads() -> None:
    parts = {
        "subject": CART["subject"],
        "text": "{% assign name = traits.nickname | default: traits.first_name %}{{ name }}\n"
                "{% for item in event.items %}{{ item.title }} {{ forloop.index }}{% endfor %}\n"
                "{% if consent.marketing_sms %}{{ unsubscribe_url }}{% endif %}{{ traits['last name'] }}",
        "data": {"deep_link": "{{ computed.orders_90d }}"},
    }
    assert fields_read(parts) == {
        "traits.first_name", "traits.nickname", "event.items", "consent.marketing_sms", "unsubscribe_url",
        "traits['last name']", "computed.orders_90d",
    }


def test_fields_read_skips_parts_that_do_not_parse() -> None:
    assert fields_read({"subject": "{{ traits.a }}", "text": "{% if %}"}) == {"traits.a"}


@pytest.mark.parametrize(("source", "variable"), [
    ("{% for item in event.items %}{{ item }}{% endfor %}", "event.items"),
    ("{{ traits.city | upcase }}", "traits.city"),
    ("{{ computed.orders_90d }} {{ computed.ltv }}", "computed.ltv"),
], ids=["loop", "filter", "second-of-two"])
def test_preview_reports_missing_values_that_are_looped_over_or_filtered(source: str, variable: str) -> None:
    with pytest.raises(ValidationError) as caught:
        preview({"text": source}, person())
    assert caught.value.details[0]["variable"] == variable


def test_preview_treats_a_missing_value_in_a_condition_as_false() -> None:
    source = ("{% if traits.nickname %}{{ traits.nickname }}{% else %}there{% endif %}"
              "{% unless consent.marketing_sms %}!{% endunless %}{% if computed.missing > 0 %}?{% endif %}")
    assert preview({"text": source}, person()) == {"text": "there!"}
    assert preview({"text": source}, person(nickname="Ada")) == {"text": "Ada!"}
