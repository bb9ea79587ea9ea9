"""Reading resource documents from YAML: located errors, every one of them, and printing back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from rapport.errors import ValidationError
from rapport.resources import Resource, dump_documents, known_kinds, parse_documents
from rapport.resources.parse import MAX_VALUES

Errors = Callable[[str], list[dict[str, Any]]]
DESIGN = (Path(__file__).parent / "cases" / "design_4_4.yaml").read_text()
KINDS = ("one of 'Channel', 'ComputedTrait', 'ConsentPurpose', 'ContentBlock', 'Experiment', 'Journey', 'Metric', "
         "'Model', 'Placement', 'Segment', 'SubscriptionGroup', 'SuppressionRule', 'Template', 'TrackingPlan'")
NAME = (
    "a name of lower-case letters, digits and '_', starting with a letter, at most 63 characters, "
    "e.g. 'orders_90d'"
)
PURPOSE = "kind: ConsentPurpose\nname: {name}\ndescription: Newsletters\n"


def detail(document: int, line: int, field: str, message: str, expected: str, **who: Any) -> dict[str, Any]:
    return {
        "document": document,
        "line": line,
        "kind": who.get("kind"),
        "name": who.get("name"),
        "field": field,
        "message": message,
        "expected": expected,
    }


def test_design_examples_are_all_registered_kinds_and_validate() -> None:
    documents = [doc for doc in yaml.safe_load_all(DESIGN)]
    assert [doc["kind"] for doc in documents if doc["kind"] not in known_kinds()] == []
    assert [r.name for r in parse_documents(DESIGN)] == [
        "orders_90d", "revenue_total", "vip", "lapsed", "email", "cart_reminder", "cart_abandonment", "hero_vip",
        "home_hero", "converted_7d", "hero_test"]


def test_empty_text_and_empty_documents() -> None:
    assert parse_documents("") == []
    assert parse_documents("# only a comment\n") == []
    assert parse_documents("---\n---\n...\n") == []


def test_empty_documents_still_count_in_document_indexes(errors_of: Errors) -> None:
    text = "---\n---\n# nothing\n---\n" + PURPOSE.format(name="Newsletter")
    assert errors_of(text) == [
        detail(
            2,
            6,
            "name",
            f"invalid name 'Newsletter'; expected {NAME}",
            NAME,
            kind="ConsentPurpose",
            name="Newsletter",
        )
    ]


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Bad", "'Bad'"),
        ("1abc", "'1abc'"),
        ("a-b", "'a-b'"),
        ("_a", "'_a'"),
        ("a" * 64, repr("a" * 57 + "...")),
        ("12", "12"),
        ("[a]", "a list"),
        ("true", "true"),
    ],
)
def test_invalid_names(errors_of: Errors, name: str, shown: str) -> None:
    text = f"kind: ConsentPurpose\nname: {name}\ndescription: x\n"
    parsed_name = name if name not in ("[a]", "true", "12") else None
    assert errors_of(text) == [
        detail(
            0,
            2,
            "name",
            f"invalid name {shown}; expected {NAME}",
            NAME,
            kind="ConsentPurpose",
            name=parsed_name,
        )
    ]


def test_longest_name_is_63_characters() -> None:
    assert parse_documents(PURPOSE.format(name="a" * 63))[0].name == "a" * 63


def test_missing_kind_and_name(errors_of: Errors) -> None:
    assert errors_of("\n\ndescription: x\n") == [
        detail(0, 3, "kind", f"missing required field 'kind'; expected {KINDS}", KINDS),
        detail(0, 3, "name", f"missing required field 'name'; expected {NAME}", NAME),
    ]


def test_kind_not_a_string_and_unknown_kind_with_suggestion(errors_of: Errors) -> None:
    text = "kind: 3\nname: a\n---\nkind: computedtrait\nname: b\n---\nkind: Widget\nname: vip\nrule: x\n"
    assert errors_of(text) == [
        detail(0, 1, "kind", f"invalid kind 3; expected {KINDS}", KINDS, name="a"),
        detail(
            1,
            4,
            "kind",
            f"unknown kind 'computedtrait' (did you mean 'ComputedTrait'?); expected {KINDS}",
            KINDS,
            kind="computedtrait",
            name="b",
        ),
        detail(2, 7, "kind", f"unknown kind 'Widget'; expected {KINDS}", KINDS, kind="Widget", name="vip"),
    ]


def test_document_must_be_a_mapping(errors_of: Errors) -> None:
    expected = "a mapping with 'kind' and 'name'"
    assert errors_of("- a\n---\njust text\n") == [
        detail(0, 1, "", f"a resource document must be a mapping, got a list; expected {expected}", expected),
        detail(
            1, 3, "", f"a resource document must be a mapping, got 'just text'; expected {expected}", expected
        ),
    ]


def test_duplicate_kind_and_name_in_one_text(errors_of: Errors) -> None:
    text = PURPOSE.format(name="news") + "---\n" + PURPOSE.format(name="news")
    expected = "each kind and name at most once per text"
    message = "duplicate ConsentPurpose 'news'; first defined in document 0 (line 2)"
    assert errors_of(text) == [detail(1, 6, "name", message, expected, kind="ConsentPurpose", name="news")]


def test_same_name_in_different_kinds_is_fine() -> None:
    text = PURPOSE.format(name="news") + "---\nkind: ComputedTrait\nname: news\nevent: x\naggregate: count\n"
    assert [r.key for r in parse_documents(text)] == [("ConsentPurpose", "news"), ("ComputedTrait", "news")]


def test_duplicate_keys_point_at_the_second_one(errors_of: Errors) -> None:
    text = PURPOSE.format(name="news") + "description: again\n"
    message = "duplicate key 'description'; first at line 3"
    expected = "each key at most once in a mapping"
    assert errors_of(text) == [
        detail(0, 4, "description", message, expected, kind="ConsentPurpose", name="news")
    ]


def test_values_that_json_cannot_hold(errors_of: Errors) -> None:
    text = PURPOSE.format(name="news") + "1: one\nchannel: .nan\nextra: !!binary aGVsbG8=\n"
    who = {"kind": "ConsentPurpose", "name": "news"}
    assert errors_of(text) == [
        detail(0, 1, "", "invalid key 1 in document; expected a string", "a string key", **who),
        detail(0, 5, "channel", "invalid channel nan; expected a finite number", "a finite number", **who),
        detail(
            0,
            6,
            "extra",
            "invalid extra b'hello'; expected a string, number, boolean, null, list or mapping",
            "a string, number, boolean, null, list or mapping",
            **who,
        ),
    ]


def test_yes_no_on_off_and_dates_stay_strings(errors_of: Errors) -> None:
    text = "kind: ConsentPurpose\nname: news\ndescription: 2026-01-01\nchannel: on\n"
    expected = "one of 'email', 'sms', 'push', 'inapp', 'webhook', 'offline'"
    message = f"unknown channel 'on'; expected {expected}"
    assert errors_of(text) == [detail(0, 4, "channel", message, expected, kind="ConsentPurpose", name="news")]
    parsed = parse_documents("kind: ConsentPurpose\nname: news\ndescription: 2026-01-01\n")
    assert parsed[0].spec["description"] == "2026-01-01"


def test_errors_of_several_documents_are_all_reported_in_line_order(errors_of: Errors) -> None:
    text = (
        "kind: ComputedTrait\nname: a\naggregate: sum\nevent: x\nwindw: 3d\n"
        "---\nkind: ConsentPurpose\nname: b\n"
    )
    details = errors_of(text)
    assert [(d["document"], d["line"], d["field"]) for d in details] == [
        (0, 1, "property"),
        (0, 5, "windw"),
        (1, 7, "description"),
    ]


@pytest.mark.parametrize(
    ("text", "document", "line", "col", "problem"),
    [
        (
            "kind: ConsentPurpose\nname: a\ndescription: [1,\n",
            0,
            4,
            1,
            "expected the node content, but found '<stream end>'",
        ),
        (
            "kind: ConsentPurpose\nname: a\n  description: x\n",
            0,
            3,
            14,
            "mapping values are not allowed here",
        ),
        ('a: 1\n---\nkind: x\nname: "\\q"\n', 1, 4, 9, "found unknown escape character 'q'"),
        ("kind: !custom x\n", 0, 1, 7, "could not determine a constructor for the tag '!custom'"),
        ("\t- a\n", 0, 1, 1, "found character '\\t' that cannot start any token"),
    ],
    ids=["unclosed", "indent", "escape", "tag", "tab"],
)
def test_yaml_syntax_errors_name_line_and_col(
    text: str, document: int, line: int, col: int, problem: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_documents(text)
    assert caught.value.code == "invalid_yaml"
    assert caught.value.details == [{"document": document, "line": line, "col": col, "message": problem}]
    assert caught.value.message.startswith(f"invalid YAML at line {line}, col {col}: {problem}\n")
    assert caught.value.message.endswith("| " + " " * (col - 1) + "^")


def test_alias_bombs_are_refused() -> None:
    rows = ["a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    for prev, name in zip("abcde", "bcdef", strict=True):
        rows.append(f"{name}: &{name} [{', '.join(['*' + prev] * 10)}]")
    with pytest.raises(ValidationError) as caught:
        parse_documents("\n".join(rows) + "\n")
    assert caught.value.code == "invalid_yaml"
    problem = f"more than {MAX_VALUES} values once aliases are expanded"
    assert caught.value.details == [{"document": 0, "line": 1, "col": 1, "message": problem}]


def test_anchors_and_merge_keys_are_plain_values() -> None:
    text = (
        "kind: TrackingPlan\nname: web\n"
        "events:\n"
        "  Signup: &entry {schema: {type: object}}\n"
        "  Login: *entry\n"
        "identify:\n  <<: *entry\n  purposes: [analytics]\n"
    )
    [plan] = parse_documents(text)
    assert plan.spec["events"] == {
        "Signup": {"schema": {"type": "object"}},
        "Login": {"schema": {"type": "object"}},
    }
    assert plan.spec["identify"] == {"schema": {"type": "object"}, "purposes": ["analytics"]}
    assert "&" not in dump_documents([plan])


def test_error_shape_is_the_api_error_shape(errors_of: Errors) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_documents("kind: ConsentPurpose\nname: a\n")
    assert caught.value.to_json() == {
        "code": "invalid_resource",
        "message": "1 invalid resource document(s)",
        "details": [
            detail(
                0,
                1,
                "description",
                "missing required field 'description'; expected a sentence telling people what the purpose covers",
                "a sentence telling people what the purpose covers",
                kind="ConsentPurpose",
                name="a",
            )
        ],
    }


def test_dump_orders_kind_name_then_declared_fields_and_reads_back() -> None:
    stored = {
        "window": "90d",
        "purpose": "analytics",
        "name": "orders_90d",
        "kind": "ComputedTrait",
        "event": "Order Completed",
        "aggregate": "count",
    }
    resource = Resource.from_spec(stored)
    text = dump_documents([resource])
    assert text == (
        "kind: ComputedTrait\nname: orders_90d\nevent: Order Completed\naggregate: count\n"
        "window: 90d\npurpose: analytics\n"
    )
    assert parse_documents(text) == [resource]


def test_dump_separates_documents_and_keeps_multiline_text_readable() -> None:
    purposes = [
        Resource.from_spec(
            {
                "kind": "ConsentPurpose",
                "name": "news",
                "legal_basis": "consent",
                "description": "Line one\nLine two\n",
            }
        ),
        Resource.from_spec(
            {"kind": "ConsentPurpose", "name": "yes", "legal_basis": "consent", "description": "on"}
        ),
    ]
    text = dump_documents(purposes)
    assert text == (
        "kind: ConsentPurpose\nname: news\nlegal_basis: consent\ndescription: |\n  Line one\n  Line two\n"
        "---\n"
        "kind: ConsentPurpose\nname: 'yes'\nlegal_basis: consent\ndescription: 'on'\n"
    )
    assert parse_documents(text) == purposes
    assert dump_documents([]) == ""


def test_round_trip_of_design_examples() -> None:
    registered = "---\n".join(
        chunk for chunk in DESIGN.split("---\n") if chunk.split("\n")[0].split(": ")[1] in known_kinds()
    )
    resources = parse_documents(registered)
    again = parse_documents(dump_documents(resources))
    assert again == resources
    assert [r.digest for r in again] == [r.digest for r in resources]


def test_control_characters_and_deep_nesting_are_yaml_errors() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_documents("kind: ConsentPurpose\nname: \x07\n")
    problem = "unacceptable character #x0007: special characters are not allowed"
    assert caught.value.details == [{"document": 0, "line": 2, "col": 7, "message": problem}]
    with pytest.raises(ValidationError) as caught:
        parse_documents("a: 1\n---\nkind: " + "[" * 5000)
    assert caught.value.code == "invalid_yaml"
    assert caught.value.details == [
        {"document": 1, "line": 1, "col": 1, "message": "values are nested too deeply"}
    ]
    assert len(caught.value.message.splitlines()[1]) < 120


def test_integers_beyond_64_bits_are_refused(errors_of: Errors) -> None:
    text = PURPOSE.format(name="news") + "default_expiry: 99999999999999999999999\n"
    assert errors_of(text) == [
        detail(
            0,
            4,
            "default_expiry",
            "invalid default_expiry 99999999999999999999999; expected an integer within 64 bits",
            "an integer within 64 bits",
            kind="ConsentPurpose",
            name="news",
        )
    ]


def test_dump_of_a_kind_no_longer_registered_keeps_the_given_order() -> None:
    resource = Resource.from_spec({"name": "old", "zeta": 1, "kind": "Retired", "alpha": [1, 2]})
    assert dump_documents([resource]) == "kind: Retired\nname: old\nzeta: 1\nalpha:\n  - 1\n  - 2\n"
