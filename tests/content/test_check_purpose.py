"""A Placement personalizes with a person's data, so its purpose must be one people consent to: ``necessary`` and
purposes on another legal basis (allowed for everyone) are refused at apply, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from api.support import ApiClient, apply_yaml, assert_error

from rapport.core import NewWorkspace

BLOCK = "kind: ContentBlock\nname: hero_default\nchannel: web\nbody: Hello\n---\n"


def placement(purpose: str | None) -> str:
    line = f"purpose: {purpose}\n" if purpose is not None else ""
    return BLOCK + f"kind: Placement\nname: home_hero\nchannel: web\n{line}default: hero_default\n"


def refused(response: Any) -> dict[str, Any]:
    [detail] = assert_error(response, 400, "invalid_resource")["details"]
    assert (detail["kind"], detail["name"], detail["field"]) == ("Placement", "home_hero", "purpose")
    return dict(detail)


def test_a_necessary_placement_is_refused(client: ApiClient, workspace: NewWorkspace) -> None:
    detail = refused(apply_yaml(client, workspace, placement("necessary")))
    assert detail["message"].startswith("consent purpose 'necessary' is always allowed: a placement would "
                                        "personalize for everyone")
    assert "'personalization'" in detail["expected"] and "'necessary'" not in detail["expected"]


@pytest.mark.parametrize("basis", ["legitimate_interest", "contract"])
def test_a_purpose_allowed_without_consent_is_refused(client: ApiClient, workspace: NewWorkspace, basis: str) -> None:
    purpose = f"kind: ConsentPurpose\nname: site_tuning\nlegal_basis: {basis}\ndescription: Tuning\n---\n"
    detail = refused(apply_yaml(client, workspace, purpose + placement("site_tuning")))
    assert f"has legal basis {basis!r}, so it is allowed without anyone's consent" in detail["message"]


def test_the_default_purpose_is_refused_once_it_no_longer_needs_consent(client: ApiClient,
                                                                       workspace: NewWorkspace) -> None:
    assert apply_yaml(client, workspace, placement(None)).status_code == 200
    assert apply_yaml(client, workspace, placement("analytics")).status_code == 200
    relaxed = ("kind: ConsentPurpose\nname: personalization\nlegal_basis: legitimate_interest\n"
               "description: Tailor\n---\n")
    detail = refused(apply_yaml(client, workspace, relaxed + placement(None)))
    assert "'personalization' has legal basis 'legitimate_interest'" in detail["message"]
