"""SDK consent context (Segment and RudderStack shapes) mapped to purposes."""

from __future__ import annotations

from typing import Any

import pytest

from rapport.consent import Catalog, ConsentMapping
from rapport.errors import ValidationError

DEFAULT = ConsentMapping()


def test_segment_category_preferences() -> None:
    intents, unknown = DEFAULT.extract(
        {
            "consent": {
                "categoryPreferences": {
                    "Analytics": True,
                    "Advertising": False,
                    "Functional": True,
                    "Email": True,
                    "Strictly Necessary": True,
                    "Heatmaps": False,
                }
            },
            "ip": "203.0.113.9",
        }
    )
    assert intents == [
        ("analytics", "granted"),
        ("advertising", "denied"),
        ("personalization", "granted"),
        ("marketing_email", "granted"),
    ]
    assert unknown == ["segment:Heatmaps"]


def test_segment_names_match_ignoring_case_and_punctuation() -> None:
    intents, _ = DEFAULT.extract(
        {"consent": {"categoryPreferences": {"analytics": True, "marketing_and-ANALYTICS": False}}}
    )
    assert intents == [("analytics", "denied")]


def test_segment_onetrust_group_ids() -> None:
    intents, unknown = DEFAULT.extract({"consent": {"categoryPreferences": {"C0001": True, "C0004": False}}})
    assert intents == [("advertising", "denied")]
    assert unknown == []


def test_rudderstack_consent_management() -> None:
    intents, unknown = DEFAULT.extract(
        {
            "consentManagement": {
                "provider": "oneTrust",
                "resolutionStrategy": "and",
                "allowedConsentIds": ["C0001", "C0002", "C0003"],
                "deniedConsentIds": ["C0004", "C0009"],
            }
        }
    )
    assert intents == [("analytics", "granted"), ("personalization", "granted"), ("advertising", "denied")]
    assert unknown == ["rudderstack:C0009"]


def test_rudderstack_older_denied_only_shape() -> None:
    intents, unknown = DEFAULT.extract({"consentManagement": {"deniedConsentIds": ["C0002", "C0004"]}})
    assert intents == [("analytics", "denied"), ("advertising", "denied")]
    assert unknown == []


def test_rudderstack_ids_are_case_sensitive() -> None:
    intents, unknown = DEFAULT.extract({"consentManagement": {"allowedConsentIds": ["c0002"]}})
    assert intents == []
    assert unknown == ["rudderstack:c0002"]


def test_rudderstack_ids_as_object_keys() -> None:
    intents, _ = DEFAULT.extract(
        {"consentManagement": {"allowedConsentIds": {"C0002": "Performance Cookies"}}}
    )
    assert intents == [("analytics", "granted")]


def test_denial_wins_over_grant_for_one_purpose() -> None:
    context = {
        "consent": {"categoryPreferences": {"Targeting": True, "Marketing": False, "Advertising": True}},
        "consentManagement": {"allowedConsentIds": ["C0002"], "deniedConsentIds": ["C0002"]},
    }
    intents, _ = DEFAULT.extract(context)
    assert intents == [("advertising", "denied"), ("analytics", "denied")]


@pytest.mark.parametrize(
    "context",
    [
        pytest.param({}, id="empty"),
        pytest.param({"consent": None, "consentManagement": None}, id="nulls"),
        pytest.param({"consent": {"categoryPreferences": None}}, id="null-prefs"),
        pytest.param({"consent": {"destinationPreferences": {"Mixpanel": True}}}, id="other-consent-keys"),
        pytest.param({"consentManagement": {"provider": "custom"}}, id="no-ids"),
    ],
)
def test_absent_consent(context: dict[str, Any]) -> None:
    assert DEFAULT.extract(context) == ([], [])


@pytest.mark.parametrize(
    ("context", "path"),
    [
        pytest.param("nope", "context", id="context-not-object"),
        pytest.param({"consent": ["Analytics"]}, "context.consent", id="consent-list"),
        pytest.param(
            {"consent": {"categoryPreferences": ["Analytics"]}},
            "context.consent.categoryPreferences",
            id="prefs-list",
        ),
        pytest.param(
            {"consent": {"categoryPreferences": {"Analytics": "yes"}}},
            "context.consent.categoryPreferences.Analytics",
            id="pref-not-bool",
        ),
        pytest.param({"consentManagement": "C0002"}, "context.consentManagement", id="cm-string"),
        pytest.param(
            {"consentManagement": {"allowedConsentIds": "C0002"}},
            "context.consentManagement.allowedConsentIds",
            id="ids-string",
        ),
        pytest.param(
            {"consentManagement": {"deniedConsentIds": [2]}},
            "context.consentManagement.deniedConsentIds",
            id="ids-not-strings",
        ),
    ],
)
def test_malformed_context(context: Any, path: str) -> None:
    with pytest.raises(ValidationError) as info:
        DEFAULT.extract(context)
    assert info.value.code == "invalid_consent_context"
    assert info.value.details == [{"path": path}]


def test_workspace_settings_overlay_defaults() -> None:
    mapping = ConsentMapping.from_settings(
        {
            "segment": {
                "Marketing": ["marketing_email", "marketing_sms"],
                "Heatmaps": "analytics",
                "Video": [],
            },
            "rudderstack": {"C0002": ["analytics", "personalization"], "ketch_ads": ["advertising"]},
        },
        Catalog.default(),
    )
    intents, unknown = mapping.extract(
        {
            "consent": {
                "categoryPreferences": {
                    "marketing": True,
                    "Heatmaps": True,
                    "Video": True,
                    "Analytics": False,
                }
            },
            "consentManagement": {"allowedConsentIds": ["C0002", "ketch_ads"]},
        }
    )
    assert intents == [
        ("marketing_email", "granted"),
        ("marketing_sms", "granted"),
        ("analytics", "denied"),
        ("personalization", "granted"),
        ("advertising", "granted"),
    ]
    assert unknown == []


def test_from_settings_none_is_default() -> None:
    assert ConsentMapping.from_settings(None) == ConsentMapping()
    assert ConsentMapping.from_settings({}) == ConsentMapping()


def test_settings_name_unknown_purpose() -> None:
    with pytest.raises(ValidationError) as info:
        ConsentMapping.from_settings({"segment": {"Analytics": ["analytic"]}}, Catalog.default())
    assert info.value.code == "unknown_purpose"


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"mparticle": {}}, id="unknown-source"),
        pytest.param({"segment": ["Analytics"]}, id="table-not-mapping"),
        pytest.param({"segment": {"Analytics": 1}}, id="purposes-not-list"),
        pytest.param({"rudderstack": {"C0002": [1]}}, id="purpose-not-string"),
    ],
)
def test_invalid_settings(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        ConsentMapping.from_settings(settings)
    assert info.value.code == "invalid_consent_mapping"
