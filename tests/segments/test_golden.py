"""Representative rules compile to the SQL stored under ``golden/``, per dialect, verbatim.

Regenerate after an intended change with ``RAPPORT_REGENERATE_GOLDEN=1 pytest tests/segments/test_golden.py``
and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rules.strategies import rules as any_rules

from rapport.errors import ValidationError
from rapport.rules import parse
from rapport.rules.ast import Node
from rapport.segments.check import ensure_segment_rule
from rapport.segments.sql import compile_differences, compile_rule
from rapport.storage.postgres.database import DIALECT as POSTGRES
from rapport.storage.sqlite.database import DIALECT as SQLITE
from rapport.workspaces.runtime import WorkspaceRuntime

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("RAPPORT_REGENERATE_GOLDEN", "") not in ("", "0")
AT = 1_772_445_600_000
"""2026-03-02T10:00:00Z."""

RULES = {
    "vip": 'computed.revenue_total > 200 and count("Order Completed", within=30d) >= 1',
    "lapsed": "computed.orders_90d == 0 and exists(traits.email)",
    "plan_in": 'traits.plan == "pro" or traits.plan in ["team", "enterprise", 3]',
    "nested_and_lists": 'traits.address.city starts_with "Ber" and not traits.tags contains "churned"',
    "dates_and_numbers": "traits.signup >= 2026-01-01 and traits.age < 30 and traits.age != 2.5",
    "consent": "consent.marketing_email and consent.newsletter and not consent.necessary",
    "segment_and_days_since": 'in_segment("vip") and days_since("Order Completed") > 14',
    "sum_where": 'sum("Order Completed", "revenue", within=90d, where=event.currency == "EUR") >= 100',
    "time_traits": "computed.last_seen < 2026-03-01T00:00:00Z or computed.first_seen == \"2026-01-01T00:00:00.000Z\"",
    "rates": "computed.email_open_rate >= 0.2 and computed.days_since_last_order <= 30",
    "property_value": 'computed.last_plan == "pro" or computed.last_plan contains "team"',
    "aggregates": 'avg("Order Completed", "revenue") > 50 or min("Order Completed", "revenue", within=7d) < 5',
    "seen": 'last_seen("Page Viewed", within=1h) > 2026-03-01 or first_seen("Signed Up") < 2026-01-01',
    "distinct_and_nulls": "traits.vip != true and computed.skus_30d >= 3 and traits.nickname is null",
}


REFRESH = {
    "recent_buyers": 'count("Order Completed", within=30d) >= 1',
    "lapsed_buyers": 'count("Order Completed") >= 1 and count("Order Completed", within=90d) == 0',
    "big_spenders": 'sum("Order Completed", "revenue", within=30d) > 200 or computed.orders_90d >= 3',
    "pro_plan": 'traits.plan == "pro" and count("Page Viewed", within=7d) >= 1',
    "everyone": None,
}
"""Segments refreshed in one query (``compile_differences``): rules decided in a series' pass, and the
others joined."""


def rendered(rule_text: str, dialect_name: str, definitions: WorkspaceRuntime) -> str:
    dialect = SQLITE if dialect_name == "sqlite" else POSTGRES
    sql, params = compile_rule(parse(rule_text), definitions, dialect, AT)
    lines = [f"-- {rule_text}", sql, *(f"-- ${i}: {p!r}" for i, p in enumerate(params, 1))]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
@pytest.mark.parametrize("name", sorted(RULES))
def test_rule_compiles_to_its_golden_sql(name: str, dialect: str, definitions: WorkspaceRuntime) -> None:
    path = GOLDEN / f"{name}.{dialect}.sql"
    text = rendered(RULES[name], dialect, definitions)
    if REGENERATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing {path}; run with RAPPORT_REGENERATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_refresh_compiles_to_its_golden_sql(dialect: str, definitions: WorkspaceRuntime) -> None:
    path = GOLDEN / f"refresh.{dialect}.sql"
    named = [(name, None if text is None else parse(text)) for name, text in REFRESH.items()]
    sql, params = compile_differences(named, definitions, SQLITE if dialect == "sqlite" else POSTGRES, AT)
    lines = [*(f"-- {name}: {text}" for name, text in REFRESH.items()), sql,
             *(f"-- ${i}: {p!r}" for i, p in enumerate(params, 1))]
    text = "\n".join(lines) + "\n"
    if REGENERATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing {path}; run with RAPPORT_REGENERATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8")


def test_every_golden_file_belongs_to_a_rule() -> None:
    expected = {f"{name}.{d}.sql" for name in [*RULES, "refresh"] for d in ("sqlite", "postgres")}
    assert {p.name for p in GOLDEN.glob("*.sql")} == expected


def _segment_rule(rule: Node) -> bool:
    try:
        ensure_segment_rule(rule)
    except ValidationError:
        return False
    return True


@given(rule=any_rules.filter(_segment_rule), dialect=st.sampled_from(["sqlite", "postgres"]))
def test_values_are_bound_never_written_into_the_sql(rule: Node, dialect: str, definitions: WorkspaceRuntime) -> None:
    sql, params = compile_rule(rule, definitions, SQLITE if dialect == "sqlite" else POSTGRES, AT)
    assert sql.count("?") == len(params)


@pytest.mark.parametrize("value", ["'; DROP TABLE profiles; --", 'a"b', "?", "%s", "\\", "it's"])
def test_hostile_strings_stay_parameters(value: str, definitions: WorkspaceRuntime) -> None:
    rule = parse(f"traits.{_quoted(value)} == {_quoted(value)} or in_segment({_quoted(value)})")
    for dialect in (SQLITE, POSTGRES):
        sql, params = compile_rule(rule, definitions, dialect, AT)
        assert value == "?" or value not in sql
        assert sql.count("?") == len(params) and params.count(value) == 3


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
