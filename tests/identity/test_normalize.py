"""Normalization of raw identifier values and extraction from Segment-spec messages."""

from __future__ import annotations

from typing import Any

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapport.errors import ValidationError
from rapport.identity.model import Identifier
from rapport.identity.normalize import MAX_LENGTH, alias_previous, identifiers_from_event, normalize


@pytest.mark.parametrize(
    ("type", "raw", "region", "expected"),
    [
        pytest.param("email", "  Ada@Example.COM ", None, "ada@example.com", id="email-trim-case"),
        pytest.param("email", "\tada@example.com\n", None, "ada@example.com", id="email-tabs-newlines"),
        pytest.param("email", "ada+tag@sub.example.co.uk", None, "ada+tag@sub.example.co.uk", id="email-plus"),
        pytest.param("email", "ada", None, None, id="email-no-at"),
        pytest.param("email", "@example.com", None, None, id="email-no-local"),
        pytest.param("email", "ada@", None, None, id="email-no-domain"),
        pytest.param("email", "a@b@example.com", None, None, id="email-two-at"),
        pytest.param("email", "ada lovelace@example.com", None, None, id="email-inner-space"),
        pytest.param("email", "   ", None, None, id="email-blank"),
        pytest.param("email", 42, None, None, id="email-number"),
        pytest.param("phone", "+1 201-555-0123", None, "+12015550123", id="phone-international"),
        pytest.param("phone", "tel:+1-201-555-0123", None, "+12015550123", id="phone-tel-uri"),
        pytest.param("phone", "+1 201 555 0123 ext. 7", None, "+12015550123", id="phone-extension-dropped"),
        pytest.param("phone", "(201) 555-0123", None, None, id="phone-national-no-region"),
        pytest.param("phone", "(201) 555-0123", "US", "+12015550123", id="phone-national-us"),
        pytest.param("phone", "030 1234567", "DE", "+49301234567", id="phone-national-de"),
        pytest.param("phone", "030 1234567", "de", "+49301234567", id="phone-region-lower-case"),
        pytest.param("phone", "0049 30 1234567", "DE", "+49301234567", id="phone-idd-prefix"),
        pytest.param("phone", "020 7946 0958", "GB", "+442079460958", id="phone-national-gb"),
        pytest.param("phone", "+49 30 1234567", "US", "+49301234567", id="phone-plus-beats-region"),
        pytest.param("phone", "1-800-FLOWERS", "US", "+18003569377", id="phone-vanity"),
        pytest.param("phone", "+1 555 555 5555", None, None, id="phone-not-valid"),
        pytest.param("phone", "12", None, None, id="phone-too-short"),
        pytest.param("phone", "not a phone", "US", None, id="phone-text"),
        pytest.param("phone", 12015550123, "US", None, id="phone-number-type"),
        pytest.param("user_id", " u-1 ", None, "u-1", id="user-trim"),
        pytest.param("user_id", "User-1", None, "User-1", id="user-case-kept"),
        pytest.param("user_id", 123, None, "123", id="user-int"),
        pytest.param("user_id", -5, None, "-5", id="user-negative-int"),
        pytest.param("user_id", 1.0, None, "1", id="user-whole-float"),
        pytest.param("user_id", float(2**53), None, "9007199254740992", id="user-largest-exact-float"),
        pytest.param("user_id", 1.5, None, None, id="user-fraction"),
        pytest.param("user_id", 1e300, None, None, id="user-inexact-float"),
        pytest.param("user_id", float("nan"), None, None, id="user-nan"),
        pytest.param("user_id", True, None, None, id="user-bool"),
        pytest.param("user_id", {"id": 1}, None, None, id="user-object"),
        pytest.param("user_id", ["u1"], None, None, id="user-array"),
        pytest.param("user_id", None, None, None, id="user-null"),
        pytest.param("user_id", "", None, None, id="user-empty"),
        pytest.param("anonymous_id", 77, None, "77", id="anonymous-int"),
        pytest.param("anonymous_id", " 3f2a ", None, "3f2a", id="anonymous-trim"),
        pytest.param("device_id", "ABC-123 ", None, "ABC-123", id="device-trim"),
        pytest.param("device_id", 42, None, "42", id="device-int"),
        pytest.param("loyalty_card", "  LC 0001 ", None, "LC 0001", id="custom-type"),
    ],
)
def test_normalize_table(type: str, raw: object, region: str | None, expected: str | None) -> None:
    result = normalize(type, raw, default_region=region)
    assert result == (None if expected is None else Identifier(type, expected))


def test_length_limit_is_inclusive() -> None:
    assert normalize("user_id", "x" * MAX_LENGTH) == Identifier("user_id", "x" * MAX_LENGTH)
    assert normalize("user_id", f"  {'x' * MAX_LENGTH}  ") == Identifier("user_id", "x" * MAX_LENGTH)


@pytest.mark.parametrize(
    ("type", "raw"),
    [
        pytest.param("user_id", "x" * (MAX_LENGTH + 1), id="long-text"),
        pytest.param("email", "a" * MAX_LENGTH + "@example.com", id="long-email"),
        pytest.param("phone", "+1" + "2" * MAX_LENGTH, id="long-phone"),
        pytest.param("user_id", 10**300, id="long-int"),
        pytest.param("user_id", 10**5000, id="huge-int"),
        pytest.param("device_id", "a\x00b", id="nul"),
    ],
)
def test_unusable_values_raise(type: str, raw: object) -> None:
    with pytest.raises(ValidationError) as caught:
        normalize(type, raw)
    assert caught.value.code == "invalid_identifier"
    assert type in caught.value.message


@pytest.mark.parametrize("type", ["Email", "", "1st", "user-id", "x" * 65])
def test_bad_type_names_raise(type: str) -> None:
    with pytest.raises(ValidationError) as caught:
        normalize(type, "v")
    assert caught.value.code == "invalid_identifier_type"
    assert repr(type) in caught.value.message


def test_unknown_region_raises() -> None:
    with pytest.raises(ValidationError) as caught:
        normalize("phone", "+12015550123", default_region="XX")
    assert caught.value.code == "invalid_region"
    assert "'XX'" in caught.value.message


def test_every_region_example_number_normalizes_from_national_and_international_forms() -> None:
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        number = phonenumbers.example_number(region)
        assert number is not None
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        assert normalize("phone", national, default_region=region) == Identifier("phone", e164), region
        assert normalize("phone", international) == Identifier("phone", e164), region
        assert normalize("phone", e164) == Identifier("phone", e164), region


@given(
    st.sampled_from(["email", "user_id", "anonymous_id", "device_id", "crm_id"]),
    st.one_of(st.text(st.characters(exclude_characters="\x00"), max_size=40), st.integers(), st.floats(), st.emails()),
)
def test_normalize_is_idempotent(type: str, raw: str | int | float) -> None:
    result = normalize(type, raw)
    if result is not None:
        assert result.type == type
        assert result.value == result.value.strip() != ""
        assert normalize(type, result.value) == result
        assert normalize(type, f" {result.value}\n") == result


@given(st.emails())
def test_generated_emails_are_kept_lower_cased(address: str) -> None:
    assert normalize("email", address.upper()) == Identifier("email", address.lower())


def _identify(**extra: Any) -> dict[str, Any]:
    return {"type": "identify", "messageId": "m1", **extra}


def test_identifiers_from_event_reads_every_source_in_order() -> None:
    event = _identify(
        userId=" u1 ",
        anonymousId="a1",
        traits={"email": "Ada@Example.com", "phone": "+1 201 555 0123"},
        context={"traits": {"email": "ada@work.example"}, "device": {"id": "dev-9"}},
    )
    assert identifiers_from_event(event) == [
        Identifier("user_id", "u1"),
        Identifier("anonymous_id", "a1"),
        Identifier("email", "ada@example.com"),
        Identifier("email", "ada@work.example"),
        Identifier("phone", "+12015550123"),
        Identifier("device_id", "dev-9"),
    ]


def test_identifiers_from_event_deduplicates_after_normalizing() -> None:
    event = {
        "type": "track",
        "event": "Order Completed",
        "userId": 42,
        "context": {"traits": {"email": "ADA@example.com ", "phone": "(201) 555-0123", "userId": "x"}},
        "traits": {"email": "ada@example.com", "phone": "+12015550123"},
    }
    assert identifiers_from_event(event, default_region="US") == [
        Identifier("user_id", "42"),
        Identifier("email", "ada@example.com"),
        Identifier("phone", "+12015550123"),
    ]


def test_identifiers_from_event_skips_absent_and_unusable_values() -> None:
    event = _identify(anonymousId="", traits="not an object", context={"traits": None, "device": ["x"]})
    assert identifiers_from_event(event) == []
    assert identifiers_from_event({"type": "track", "userId": None, "traits": {"email": "nope"}}) == []


def test_identifiers_from_event_reads_custom_types() -> None:
    event = _identify(userId="u1", traits={"loyalty_card": " LC-1 "}, context={"traits": {"crm_id": 7}})
    assert identifiers_from_event(event, custom_types=["loyalty_card", "crm_id"]) == [
        Identifier("user_id", "u1"),
        Identifier("loyalty_card", "LC-1"),
        Identifier("crm_id", "7"),
    ]


def test_identifiers_from_event_names_the_field_of_a_bad_value() -> None:
    with pytest.raises(ValidationError) as caught:
        identifiers_from_event(_identify(context={"traits": {"email": "a" * 300 + "@example.com"}}))
    assert caught.value.code == "invalid_identifier"
    assert caught.value.message.startswith("context.traits.email: ")
    assert caught.value.details == [{"field": "context.traits.email", "type": "email"}]


def test_alias_previous() -> None:
    alias = {"type": "alias", "userId": "u1", "previousId": " anon-1 "}
    assert alias_previous(alias) == "anon-1"
    assert identifiers_from_event(alias) == [Identifier("user_id", "u1")]
    assert alias_previous({"type": "alias", "userId": "u1", "previousId": 12}) == "12"
    assert alias_previous({"type": "alias", "userId": "u1"}) is None
    assert alias_previous({"type": "alias", "previousId": "  "}) is None
    assert alias_previous({"type": "identify", "userId": "u1", "previousId": "anon-1"}) is None
    with pytest.raises(ValidationError, match=r"^previousId: "):
        alias_previous({"type": "alias", "previousId": "p" * 300})
