"""Field-level encryption of JSON documents: markers, round trips, and no plaintext left behind."""

from __future__ import annotations

import binascii
import copy
from functools import partial
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapport.errors import ValidationError
from rapport.privacy import (
    DEFAULT_PII_FIELDS,
    MARKER,
    Cipher,
    CryptoError,
    aad_for,
    contains_marker,
    decrypt_fields,
    decrypt_value,
    encrypt_event,
    encrypt_fields,
    encrypt_value,
    generate_key,
    is_marker,
)
from rapport.privacy.pii import MAX_DEPTH

CIPHER = Cipher(generate_key())
AAD = aad_for("value", "ws_1", "p_1")
ENC = partial(CIPHER.encrypt, aad=AAD)
DEC = partial(CIPHER.decrypt, aad=AAD)


def track_event() -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "u_123",
        "properties": {"order_id": "o_9", "revenue": 42.5, "products": [{"sku": "A1", "qty": 2}]},
        "context": {
            "ip": "203.0.113.9",
            "traits": {"email": "ada@example.com", "plan": "pro"},
            "library": {"name": "analytics-python", "version": "2.3.3"},
            "page": {"path": "/checkout", "referrer": "https://shop.example/cart"},
        },
    }


def test_encrypts_pii_at_any_depth_and_shares_the_rest() -> None:
    event = track_event()
    before = copy.deepcopy(event)
    out = encrypt_fields(event, DEFAULT_PII_FIELDS, ENC)
    assert event == before, "the input is not modified"
    assert is_marker(out["context"]["ip"])
    assert is_marker(out["context"]["traits"]["email"])
    assert out["context"]["traits"]["plan"] == "pro"
    assert out["properties"] is event["properties"]
    assert out["context"]["page"] is event["context"]["page"]
    # Keys match wherever they are: the SDK's library name is a ``name`` too.
    assert is_marker(out["context"]["library"]["name"])
    assert out is not event and out["context"] is not event["context"]
    text = orjson.dumps(out)
    assert b"ada@example.com" not in text and b"203.0.113.9" not in text
    assert decrypt_fields(out, DEC) == event


def test_keys_match_ignoring_case_inside_lists() -> None:
    doc = {"people": [{"EMAIL": "a@x.io", "FirstName": "Ada"}, {"lastname": "Lovelace", "age": 36}, 3]}
    out = encrypt_fields(doc, DEFAULT_PII_FIELDS, ENC)
    assert is_marker(out["people"][0]["EMAIL"]) and is_marker(out["people"][0]["FirstName"])
    assert is_marker(out["people"][1]["lastname"]) and out["people"][1]["age"] == 36
    assert out["people"][2] == 3
    assert decrypt_fields(out, DEC) == doc


@pytest.mark.parametrize(
    "value",
    [None, 7, 1.5, True, "", {"street": "1 Main St", "city": "Leeds"}, ["+441234", "+449876"]],
    ids=repr,
)
def test_any_json_value_is_encrypted_whole(value: Any) -> None:
    out = encrypt_fields({"address": value}, DEFAULT_PII_FIELDS, ENC)
    assert is_marker(out["address"])
    assert decrypt_fields(out, DEC) == {"address": value}
    assert decrypt_value(encrypt_value(value, ENC), DEC) == value


def test_document_without_pii_comes_back_as_a_new_equal_object() -> None:
    doc = {"event": "Viewed", "properties": {"page": "/"}}
    out = encrypt_fields(doc, DEFAULT_PII_FIELDS, ENC)
    assert out == doc and out is not doc
    assert out["properties"] is doc["properties"]
    back = decrypt_fields(doc, DEC)
    assert back == doc and back is not doc


def test_encrypting_twice_changes_nothing() -> None:
    once = encrypt_fields(track_event(), DEFAULT_PII_FIELDS, ENC)
    assert encrypt_fields(once, DEFAULT_PII_FIELDS, ENC) == once


def test_custom_field_set() -> None:
    out = encrypt_fields({"ssn": "123", "email": "a@x.io"}, frozenset({"SSN"}), ENC)
    assert is_marker(out["ssn"]) and out["email"] == "a@x.io"


def test_contains_marker() -> None:
    assert not contains_marker(track_event())
    assert contains_marker(encrypt_fields(track_event(), DEFAULT_PII_FIELDS, ENC))
    assert contains_marker([{"a": [{MARKER: "AAAA"}]}])
    assert not contains_marker({MARKER: "AAAA", "other": 1})
    assert not contains_marker({MARKER: 5})


def test_decrypt_value_rejects_bad_markers() -> None:
    with pytest.raises(CryptoError):
        decrypt_value({"not": "a marker"}, DEC)
    with pytest.raises(CryptoError):
        decrypt_value({MARKER: "***"}, DEC)
    marker = encrypt_value("ada@example.com", ENC)
    raw = bytearray(marker[MARKER].encode())
    raw[10] = ord("A") if raw[10] != ord("A") else ord("B")
    with pytest.raises(CryptoError):
        decrypt_value({MARKER: raw.decode()}, DEC)
    with pytest.raises(CryptoError):
        decrypt_value(marker, partial(CIPHER.decrypt, aad=aad_for("value", "ws_1", "p_2")))
    with pytest.raises(CryptoError):
        decrypt_fields(marker, DEC)


def test_too_deep_documents_are_rejected() -> None:
    doc: dict[str, Any] = {"email": "a@x.io"}
    for _ in range(MAX_DEPTH + 5):
        doc = {"n": [doc]}
    with pytest.raises(ValidationError) as info:
        encrypt_fields(doc, DEFAULT_PII_FIELDS, ENC)
    assert info.value.code == "too_deeply_nested"


SECRET = "\u2603"
PII_KEYS = [
    "email",
    "EMAIL",
    "Email",
    "phone",
    "name",
    "first_name",
    "FIRST_NAME",
    "firstName",
    "firstname",
    "last_name",
    "lastName",
    "LASTNAME",
    "address",
    "ip",
    "IP",
]
_lowered = {k.lower() for k in DEFAULT_PII_FIELDS}
safe_text = st.text(st.characters(exclude_characters=SECRET, exclude_categories=["Cs"]), max_size=8)
plain_keys = safe_text.filter(lambda k: k.lower() not in _lowered and k != MARKER)
leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | safe_text
)
secret_values = st.recursive(
    st.builds(lambda s: SECRET + s, safe_text),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(plain_keys, inner, max_size=3),
    max_leaves=6,
)


def _merge(plain: dict[str, Any], pii: dict[str, Any]) -> dict[str, Any]:
    return {**plain, **pii}


def _objects(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        _merge,
        st.dictionaries(plain_keys, children, max_size=4),
        st.dictionaries(st.sampled_from(PII_KEYS), secret_values, max_size=2),
    )


documents = _objects(st.recursive(leaves, lambda c: st.lists(c, max_size=4) | _objects(c), max_leaves=25))


def _pii_values_are_markers(value: Any) -> bool:
    if isinstance(value, dict):
        return all(is_marker(v) if k.lower() in _lowered else _pii_values_are_markers(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_pii_values_are_markers(v) for v in value)
    return True


@settings(max_examples=300)
@given(documents)
def test_no_plaintext_survives_and_round_trip(doc: dict[str, Any]) -> None:
    out = encrypt_fields(doc, DEFAULT_PII_FIELDS, ENC)
    assert SECRET not in orjson.dumps(out).decode()
    assert _pii_values_are_markers(out)
    assert decrypt_fields(out, DEC) == doc


def test_many_distinct_keys_still_match() -> None:
    doc = {f"k{i}": {"Email": f"user{i}@x.io"} for i in range(5000)}
    out = encrypt_fields(doc, DEFAULT_PII_FIELDS, ENC)
    assert all(is_marker(v["Email"]) for v in out.values())


def test_marker_holding_non_json_is_rejected() -> None:
    marker = {MARKER: binascii.b2a_base64(ENC(b"\xffnot json"), newline=False).decode()}
    with pytest.raises(CryptoError):
        decrypt_value(marker, DEC)


def test_event_scope_name_is_personal_only_at_the_top_of_traits() -> None:
    event = {
        "type": "identify", "userId": "u_1", "name": "Checkout",
        "traits": {"name": "Ada Lovelace", "email": "ada@example.com", "company": {"name": "Acme", "phone": "+1 555"}},
        "properties": {"name": "Blue Shoe", "products": [{"name": "Sock", "email": "gift@example.com"}]},
        "context": {"ip": "203.0.113.9", "library": {"name": "analytics.js"}, "app": {"name": "Shop"},
                    "traits": {"name": "Ada", "plan": "pro"}},
    }
    before = copy.deepcopy(event)
    out = encrypt_event(event, DEFAULT_PII_FIELDS, ENC)
    assert event == before, "the input is not modified"
    assert is_marker(out["traits"]["name"]) and is_marker(out["traits"]["email"])
    assert out["traits"]["company"]["name"] == "Acme" and is_marker(out["traits"]["company"]["phone"])
    assert out["properties"]["name"] == "Blue Shoe"
    assert out["properties"]["products"][0]["name"] == "Sock"
    assert is_marker(out["properties"]["products"][0]["email"])
    assert is_marker(out["context"]["ip"]) and is_marker(out["context"]["traits"]["name"])
    assert out["context"]["library"] is event["context"]["library"] and out["context"]["app"]["name"] == "Shop"
    assert out["context"]["traits"]["plan"] == "pro" and out["name"] == "Checkout"
    assert decrypt_fields(out, DEC) == event
    assert encrypt_event(out, DEFAULT_PII_FIELDS, ENC) == out, "encrypting twice changes nothing"


def test_event_consent_choices_are_not_sealed() -> None:
    """Consent categories named like PII fields ("Email") are choices, not personal data."""
    consent = {"categoryPreferences": {"Analytics": True, "Email": False, "Phone": True}}
    managed = {"provider": "custom", "allowedConsentIds": ["email"], "deniedConsentIds": ["phone"]}
    event = {"type": "track", "event": "Viewed",
             "context": {"ip": "203.0.113.9", "consent": consent, "consentManagement": managed,
                         "page": {"url": "https://shop.example/"}}}
    out = encrypt_event(event, DEFAULT_PII_FIELDS, ENC)
    assert list(out["context"]) == list(event["context"]), "keys keep their order"
    assert out["context"]["consent"] == consent and out["context"]["consentManagement"] == managed
    assert is_marker(out["context"]["ip"]) and out["context"]["page"] is event["context"]["page"]
    plain = {"type": "track", "context": {"consent": consent, "locale": "en"}}
    assert encrypt_event(plain, DEFAULT_PII_FIELDS, ENC)["context"] is plain["context"]


def test_event_scope_extends_with_workspace_fields() -> None:
    out = encrypt_event({"properties": {"loyalty": {"SSN": "123"}}, "traits": {"ssn": "9"}},
                        DEFAULT_PII_FIELDS | {"ssn"}, ENC)
    assert is_marker(out["properties"]["loyalty"]["SSN"]) and is_marker(out["traits"]["ssn"])
