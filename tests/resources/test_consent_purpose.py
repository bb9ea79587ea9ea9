"""ConsentPurpose documents: defaults, options named in errors, and the built-in 'necessary'."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rapport.resources import parse_documents

Errors = Callable[[str], list[dict[str, Any]]]
BASES = (
    "one of 'consent', 'legitimate_interest', 'contract', 'legal_obligation', 'vital_interest', 'public_task'"
)
CHANNELS = "one of 'email', 'sms', 'push', 'inapp', 'webhook', 'offline'"


def err(line: int, field: str, message: str, expected: str, name: str = "newsletter") -> dict[str, Any]:
    return {
        "document": 0,
        "line": line,
        "kind": "ConsentPurpose",
        "name": name,
        "field": field,
        "message": message,
        "expected": expected,
    }


def test_minimal_purpose_gets_consent_as_its_legal_basis() -> None:
    [purpose] = parse_documents("kind: ConsentPurpose\nname: newsletter\ndescription: Weekly news\n")
    assert purpose.spec == {
        "kind": "ConsentPurpose",
        "name": "newsletter",
        "legal_basis": "consent",
        "description": "Weekly news",
    }


def test_full_purpose() -> None:
    text = (
        "kind: ConsentPurpose\nname: analytics\nlegal_basis: legitimate_interest\n"
        "description: Measuring the shop\nchannel: inapp\ndefault_expiry: 52w\n"
    )
    [purpose] = parse_documents(text)
    assert purpose.spec["legal_basis"] == "legitimate_interest"
    assert purpose.spec["default_expiry"] == "52w"


def test_errors(errors_of: Errors) -> None:
    text = (
        "kind: ConsentPurpose\nname: newsletter\nlegal_basis: consnt\nchannel: mail\n"
        "default_expiry: forever\nexpiry: 1d\n"
    )
    duration = "a duration such as '30d': a whole number and one of 's', 'm' (minutes), 'h', 'd', 'w'"
    assert errors_of(text) == [
        err(
            1,
            "description",
            "missing required field 'description'; expected a sentence telling people what the purpose covers",
            "a sentence telling people what the purpose covers",
        ),
        err(
            3,
            "legal_basis",
            f"unknown legal_basis 'consnt' (did you mean 'consent'?); expected {BASES}",
            BASES,
        ),
        err(4, "channel", f"unknown channel 'mail' (did you mean 'email'?); expected {CHANNELS}", CHANNELS),
        err(5, "default_expiry", f"invalid default_expiry 'forever'; expected {duration}", duration),
        err(
            6,
            "expiry",
            "unknown field 'expiry' (did you mean 'default_expiry'?); expected one of 'kind', 'name', "
            "'legal_basis', 'description', 'channel', 'default_expiry'",
            "one of 'kind', 'name', 'legal_basis', 'description', 'channel', 'default_expiry'",
        ),
    ]


def test_necessary_is_always_allowed_so_never_based_on_consent(errors_of: Errors) -> None:
    expected = "one of 'legitimate_interest', 'contract', 'legal_obligation', 'vital_interest', 'public_task'"
    message = (
        "'necessary' is always allowed, so its legal_basis cannot be 'consent' (the default); "
        f"expected {expected}"
    )
    text = "kind: ConsentPurpose\nname: necessary\ndescription: Running the shop\n"
    assert errors_of(text) == [err(1, "legal_basis", message, expected, name="necessary")]
    [purpose] = parse_documents(text + "legal_basis: contract\n")
    assert purpose.spec["legal_basis"] == "contract"
