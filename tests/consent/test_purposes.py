"""The purpose catalog: defaults, workspace overlays, and errors that name the valid options."""

from __future__ import annotations

from typing import Any

import pytest

from rapport.consent import DEFAULT_PURPOSES, NECESSARY, Catalog, Purpose, parse_legal_basis, parse_state
from rapport.errors import ValidationError
from rapport.types import DAY


def test_default_catalog() -> None:
    catalog = Catalog.default()
    assert catalog.names() == [
        "advertising",
        "analytics",
        "marketing_email",
        "marketing_push",
        "marketing_sms",
        NECESSARY,
        "personalization",
    ]
    assert all(p.legal_basis == "consent" for p in catalog if p.name != NECESSARY)
    assert catalog.get(NECESSARY).legal_basis == "contract"
    assert not catalog.get(NECESSARY).needs_consent
    assert catalog.get("marketing_sms").channel == "sms"
    assert [p.name for p in catalog.for_channel("email")] == ["marketing_email"]
    assert len(catalog) == len(DEFAULT_PURPOSES)
    assert "analytics" in catalog and "nope" not in catalog


def test_unknown_purpose_names_the_valid_ones_and_the_nearest() -> None:
    with pytest.raises(ValidationError) as info:
        Catalog.default().get("analytic")
    err = info.value
    assert err.code == "unknown_purpose"
    assert "'analytic'" in err.message and "did you mean 'analytics'" in err.message
    assert "'marketing_email'" in err.message
    assert err.details[0]["suggestion"] == "analytics"
    assert err.details[0]["valid"] == Catalog.default().names()


def test_unknown_purpose_without_a_near_match() -> None:
    with pytest.raises(ValidationError) as info:
        Catalog.default().get("zzzzzz")
    assert "did you mean" not in info.value.message
    assert info.value.details[0]["suggestion"] is None


def test_resources_overlay_defaults_and_add_purposes() -> None:
    catalog = Catalog.from_resources(
        [
            {"kind": "ConsentPurpose", "name": "analytics", "legal_basis": "legitimate_interest"},
            {
                "kind": "ConsentPurpose",
                "name": "marketing_whatsapp",
                "description": "Offers on WhatsApp",
                "channel": "whatsapp",
                "default_expiry": "365d",
            },
        ]
    )
    analytics = catalog.get("analytics")
    default_analytics = Catalog.default().get("analytics")
    assert analytics.legal_basis == "legitimate_interest"
    assert analytics.description == default_analytics.description
    assert catalog.get("marketing_whatsapp") == Purpose(
        "marketing_whatsapp", "consent", "Offers on WhatsApp", "whatsapp", 365 * DAY
    )
    assert catalog.get("marketing_email") == Catalog.default().get("marketing_email")


def test_overlay_can_clear_channel_and_expiry() -> None:
    catalog = Catalog.from_resources(
        [
            {"name": "marketing_email", "default_expiry": "30d"},
            {"name": "marketing_sms", "channel": None},
        ]
    )
    assert catalog.get("marketing_email").default_expiry_ms == 30 * DAY
    assert catalog.get("marketing_email").channel == "email"
    assert catalog.get("marketing_sms").channel is None


def test_of_always_includes_necessary() -> None:
    catalog = Catalog.of([Purpose("analytics", "consent")])
    assert catalog.names() == ["analytics", NECESSARY]


@pytest.mark.parametrize(
    ("spec", "code", "fragment"),
    [
        pytest.param({"name": "Bad Name"}, "invalid_consent_purpose", "lower-case", id="bad-name"),
        pytest.param({}, "invalid_consent_purpose", "None", id="missing-name"),
        pytest.param(
            {"name": "x", "legal_bases": "consent"}, "invalid_consent_purpose", "legal_bases", id="typo"
        ),
        pytest.param(
            {"name": "x", "legal_basis": "whim"}, "invalid_legal_basis", "'legitimate_interest'", id="basis"
        ),
        pytest.param({"name": "x", "default_expiry": "a year"}, "invalid_duration", "'a year'", id="expiry"),
        pytest.param({"name": "x", "channel": 5}, "invalid_consent_purpose", "channel", id="channel-type"),
        pytest.param(
            {"name": NECESSARY, "legal_basis": "consent"}, "invalid_consent_purpose", "always", id="nec"
        ),
    ],
)
def test_invalid_specs(spec: dict[str, Any], code: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        Catalog.from_resources([spec])
    assert info.value.code == code
    assert fragment in info.value.message


def test_duplicate_purpose() -> None:
    with pytest.raises(ValidationError) as info:
        Catalog.from_resources([{"name": "loyalty"}, {"name": "loyalty"}])
    assert info.value.code == "duplicate_purpose"


def test_parse_state_and_legal_basis() -> None:
    assert parse_state("withdrawn") == "withdrawn"
    assert parse_legal_basis("contract") == "contract"
    with pytest.raises(ValidationError) as info:
        parse_state("maybe")
    assert info.value.code == "invalid_consent_state"
    assert "'denied', 'granted', 'withdrawn'" in info.value.message
