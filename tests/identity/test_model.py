"""Identity model: identifier ordering and rule validation."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

from rapport.errors import ValidationError
from rapport.identity.model import DEFAULT_RULES, Identifier, IdentityRules


def test_identifiers_order_by_type_then_value() -> None:
    ids = [Identifier("user_id", "b"), Identifier("email", "z"), Identifier("user_id", "a")]
    assert sorted(ids) == [Identifier("email", "z"), Identifier("user_id", "a"), Identifier("user_id", "b")]
    assert str(Identifier("email", "ada@example.com")) == "email:ada@example.com"


def test_default_rules() -> None:
    assert dict(DEFAULT_RULES.limits) == {"user_id": 1}
    assert DEFAULT_RULES.priority == ("user_id", "email", "phone", "device_id", "anonymous_id")
    assert DEFAULT_RULES.limit("user_id") == 1
    assert DEFAULT_RULES.limit("email") is None


def test_rank_puts_unlisted_types_last_alphabetically() -> None:
    types = ["zeta", "anonymous_id", "email", "loyalty_id", "user_id", "device_id", "phone"]
    ranked = sorted(types, key=DEFAULT_RULES.rank)
    assert ranked == ["user_id", "email", "phone", "device_id", "anonymous_id", "loyalty_id", "zeta"]


def test_rules_are_immutable_and_hashable() -> None:
    source = {"user_id": 1}
    rules = IdentityRules(limits=source, priority=("user_id",))
    source["email"] = 1
    assert rules.limit("email") is None
    assert rules == IdentityRules(limits={"user_id": 1}, priority=("user_id",))
    assert hash(rules) == hash(IdentityRules(limits={"user_id": 1}, priority=("user_id",)))
    with pytest.raises(TypeError):
        rules.limits["email"] = 2  # type: ignore[index]


def test_rules_survive_pickle_and_deepcopy() -> None:
    rules = IdentityRules(limits={"user_id": 1, "email": 3}, priority=("email",))
    assert pickle.loads(pickle.dumps(rules)) == rules
    assert copy.deepcopy(rules) == rules


def test_from_settings_full() -> None:
    rules = IdentityRules.from_settings({"limits": {"user_id": 1, "email": 2}, "priority": ["email", "user_id"]})
    assert dict(rules.limits) == {"user_id": 1, "email": 2}
    assert rules.priority == ("email", "user_id")


def test_from_settings_missing_keys_keep_defaults() -> None:
    assert IdentityRules.from_settings({}) == DEFAULT_RULES
    no_limits = IdentityRules.from_settings({"limits": {}})
    assert dict(no_limits.limits) == {}
    assert no_limits.priority == DEFAULT_RULES.priority


@pytest.mark.parametrize(
    ("settings", "fields", "named"),
    [
        pytest.param({"limit": {}}, ["limit"], "'limit'", id="unknown-key"),
        pytest.param({"limits": {"user_id": 0}}, ["limits.user_id"], "bad limit 0", id="zero-limit"),
        pytest.param({"limits": {"user_id": True}}, ["limits.user_id"], "bad limit True", id="bool-limit"),
        pytest.param({"limits": {"user_id": "1"}}, ["limits.user_id"], "bad limit '1'", id="text-limit"),
        pytest.param({"limits": {"Email": 1}}, ["limits.Email"], "'Email'", id="bad-type-name"),
        pytest.param({"limits": [1]}, ["limits"], "'limits' must map", id="limits-not-object"),
        pytest.param({"priority": "email"}, ["priority"], "'priority' must be a list", id="priority-not-list"),
        pytest.param({"priority": ["email", "email"]}, ["priority.1"], "'email' is listed twice", id="dup"),
        pytest.param({"priority": ["email", 3]}, ["priority.1"], "type 3", id="priority-not-name"),
        pytest.param(
            {"limits": {"x": -1}, "priority": ["a b"], "extra": 1},
            ["extra", "limits.x", "priority.0"],
            "'a b'",
            id="all-problems-reported",
        ),
    ],
)
def test_from_settings_rejects(settings: dict[str, Any], fields: list[str], named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        IdentityRules.from_settings(settings)
    assert caught.value.code == "invalid_identity_rules"
    assert [d["field"] for d in caught.value.details] == fields
    assert named in caught.value.message


def test_from_settings_rejects_non_object() -> None:
    with pytest.raises(ValidationError, match="got list"):
        IdentityRules.from_settings([])  # type: ignore[arg-type]


def test_direct_construction_validates() -> None:
    with pytest.raises(ValidationError, match="bad limit 0"):
        IdentityRules(limits={"user_id": 0}, priority=())
