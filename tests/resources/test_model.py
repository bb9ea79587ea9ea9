"""Resource values: canonical digests and the kind/name invariant."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from rapport.errors import ValidationError
from rapport.resources import Resource
from rapport.resources.model import canonical_json

SPEC = {"kind": "ComputedTrait", "name": "orders_90d", "event": "Order Completed", "aggregate": "count"}


def test_digest_is_sha256_of_sorted_json_whatever_the_key_order() -> None:
    a = Resource("ComputedTrait", "orders_90d", dict(SPEC))
    b = Resource("ComputedTrait", "orders_90d", dict(reversed(list(SPEC.items()))))
    expected = hashlib.sha256(orjson.dumps(SPEC, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert a.digest == b.digest == expected
    assert canonical_json(SPEC) == orjson.dumps(SPEC, option=orjson.OPT_SORT_KEYS)
    assert a == b and hash(a) == hash(b)
    assert len({a, b}) == 1


def test_digest_changes_with_the_spec() -> None:
    a = Resource.from_spec(dict(SPEC))
    b = Resource.from_spec({**SPEC, "window": "90d"})
    assert a.digest != b.digest and a != b


def test_spec_must_carry_the_same_kind_and_name() -> None:
    with pytest.raises(ValidationError) as caught:
        Resource("ComputedTrait", "other", dict(SPEC))
    assert caught.value.code == "invalid_resource"
    assert caught.value.message == (
        "resource ComputedTrait/other has a spec for 'ComputedTrait'/'orders_90d'; expected the same kind and name"
    )


def test_from_spec_and_key() -> None:
    resource = Resource.from_spec(dict(SPEC))
    assert resource.key == ("ComputedTrait", "orders_90d")
