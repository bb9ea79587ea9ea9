"""The explain tree: each leaf's value and what the whole rule needs of it, read through ``not``."""

from __future__ import annotations

from rapport.rules import DictContext, parse
from rapport.rules.explain import explain

CTX = DictContext({"traits": {"plan": "pro", "tags": ["a", "b"]}})


def leaves(tree: dict[str, object]) -> list[tuple[str, bool]]:
    children = tree.get("children")
    if isinstance(children, list):
        return [leaf for child in children for leaf in leaves(child)]
    return [(str(tree["reason"]), bool(tree.get("negated", False)))]


def test_reasons_say_what_the_rule_needs() -> None:
    tree = explain(parse('traits.plan == "team" or exists(traits.email)'), CTX)
    assert tree["value"] is False
    assert leaves(tree) == [('traits.plan = "pro", needs == "team"', False),
                            ("traits.email = missing, needs it present", False)]


def test_under_not_the_need_is_reversed() -> None:
    tree = explain(parse('not (traits.plan == "pro" and exists(traits.email)) and not traits.tags contains "a"'),
                   CTX)
    assert tree["value"] is False
    assert leaves(tree) == [('traits.plan = "pro", needs not == "pro"', True),
                            ("traits.email = missing, needs it missing", True),
                            ('traits.tags = ["a", "b"], needs not to contain "a"', True)]
    assert "negated" not in tree


def test_two_nots_cancel() -> None:
    tree = explain(parse('not not traits.plan in ["free", "team"]'), CTX)
    assert leaves(tree) == [('traits.plan = "pro", needs one of "free", "team"', False)]
    assert explain(parse("not traits.plan is null"), CTX)["children"][0]["reason"] == (  # type: ignore[index]
        'traits.plan = "pro", needs it present')
