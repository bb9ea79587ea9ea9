"""The decision API through the real app, on SQLite and PostgreSQL: write-key and admin views, consent fallback,
rules, caps, products already bought, experiments with merges, the tracking round trip, errors, and the promise
that a write-key response never carries profile data beyond the rendered content."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from api.support import (
    ApiClient,
    admin,
    apply_yaml,
    assert_error,
    basic,
    bearer,
    profile_of,
    proven,
    track,
    user_hash,
)
from rapport.cli import app as cli
from rapport.clock import FrozenClock, to_iso
from rapport.core import NewWorkspace, Rapport
from rapport.models import service as models_service
from rapport.models.score import Calibration, ScoringModel
from rapport.types import HOUR, WorkspaceId

RESOURCES = """
kind: ComputedTrait
name: revenue_total
event: Order Completed
aggregate: sum
property: revenue
---
kind: ContentBlock
name: hero_default
channel: web
body: "<h1>Welcome to the shop</h1>"
---
kind: ContentBlock
name: hero_vip
channel: web
locale: en
tags: [loyalty]
body: "<h1>Welcome back, {{ traits.first_name | default: 'friend' }}</h1>"
locales:
  de: {body: "<h1>Willkommen zurück, {{ traits.first_name | default: 'Freund' }}</h1>"}
---
kind: ContentBlock
name: hero_new
channel: web
body: "<h1>New here? Take 10% off</h1>"
---
kind: ContentBlock
name: hero_mobile
channel: web
body: "<h1>On the go</h1>"
---
kind: ContentBlock
name: hero_bold
channel: web
body: "<h1>BIG SALE</h1>"
---
kind: Placement
name: home_hero
channel: web
purpose: personalization
default: hero_default
variants:
  - {block: hero_mobile, when: context.device == "mobile"}
  - {block: hero_vip, when: computed.revenue_total > 100}
  - {block: hero_new, when: count("Order Completed") == 0}
---
kind: ContentBlock
name: banner_default
channel: web
body: "Free returns"
---
kind: ContentBlock
name: banner_sofa
channel: web
body: "Our sofa, 20% off"
products: [sofa-1]
---
kind: ContentBlock
name: banner_capped
channel: web
body: "Newsletter: sign up"
cap: {count: 2, per: 7d}
---
kind: Placement
name: banner
channel: web
default: banner_default
variants:
  - {block: banner_sofa, when: computed.revenue_total >= 0}
  - {block: banner_capped, when: computed.revenue_total >= 0}
"""


EXPERIMENT = """
---
kind: Metric
name: converted_7d
type: conversion
event: Order Completed
window: 7d
---
kind: ContentBlock
name: promo_default
channel: web
body: "Spring sale"
---
kind: Placement
name: promo
channel: web
default: promo_default
---
kind: Experiment
name: promo_test
placement: promo
purpose: personalization
variants:
  control: {weight: 50}
  bold: {weight: 50, block: hero_bold}
metrics: [converted_7d]
"""


def setup(client: ApiClient, ws: NewWorkspace, extra: str = "") -> None:
    response = apply_yaml(client, ws, RESOURCES + extra)
    assert response.status_code == 200, response.text


def grant(client: ApiClient, ws: NewWorkspace, profile_id: str, purpose: str = "personalization") -> None:
    response = admin(client, ws, "POST", "/api/v1/consent", json={
        "profile_id": profile_id, "purpose": purpose, "state": "granted", "source": "test"})
    assert response.status_code == 201, response.text


def decide(client: ApiClient, ws: NewWorkspace, body: dict[str, Any], *, full: bool = False) -> Any:
    headers = bearer(ws.admin_token) if full else basic(ws.write_key)
    response = client.post("/api/v1/decide", json=body if full else proven(client, ws, body), headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["decisions"]


def person(client: ApiClient, ws: NewWorkspace, user: str, traits: dict[str, Any] | None = None,
           orders: list[dict[str, Any]] | None = None, consented: bool = True) -> str:
    """A person with traits and orders (counted with analytics consent), with personalization consent unless not
    ``consented``."""
    assert track(client, ws, "/v1/identify", {"userId": user, "traits": traits or {}}).status_code == 200
    pid = str(profile_of(client, ws, user_id=user)["id"])
    grant(client, ws, pid, "analytics")
    if consented:
        grant(client, ws, pid)
    for order in orders or []:
        assert track(client, ws, "/v1/track", {"userId": user, "event": "Order Completed",
                                                "properties": order}).status_code == 200
    return pid


def test_a_write_key_gets_blocks_and_reason_kinds_only(client: ApiClient, workspace: NewWorkspace) -> None:
    setup(client, workspace)
    person(client, workspace, "u1", {"first_name": "Ada"}, [{"revenue": 150}])
    out = decide(client, workspace, {"user_id": "u1", "placements": ["home_hero"]})
    assert out == {"home_hero": {"placement": "home_hero", "block": "hero_vip",
                                 "content": {"body": "<h1>Welcome back, Ada</h1>"}, "reason": {"kind": "rule"}}}
    full = decide(client, workspace, {"user_id": "u1", "placements": ["home_hero"]}, full=True)["home_hero"]
    assert full["reason"] == {"kind": "rule", "variant_index": 1, "rule": "computed.revenue_total > 100"}
    assert full["confidence"] == 1.0 and full["locale"] == "en" and full["guardrails"] == []


def test_first_matching_rule_wins_and_reads_the_request_context(client: ApiClient, workspace: NewWorkspace) -> None:
    setup(client, workspace)
    person(client, workspace, "u1", {}, [{"revenue": 150}])
    person(client, workspace, "u2")
    mobile = {"placements": ["home_hero"], "context": {"device": "mobile"}}
    assert decide(client, workspace, {"user_id": "u1", **mobile})["home_hero"]["block"] == "hero_mobile"
    assert decide(client, workspace, {"user_id": "u2", "placements": ["home_hero"]})["home_hero"]["block"] == \
        "hero_new"


def test_locale_fallback_picks_the_closest_translation(client: ApiClient, workspace: NewWorkspace) -> None:
    setup(client, workspace)
    person(client, workspace, "u1", {"first_name": "Ada"}, [{"revenue": 150}])
    for locale, body in (("de-AT", "Willkommen zurück, Ada"), ("de", "Willkommen zurück, Ada"),
                         ("fr-CA", "Welcome back, Ada"), ("en-GB", "Welcome back, Ada")):
        out = decide(client, workspace, {"user_id": "u1", "placements": ["home_hero"], "locale": locale})
        assert out["home_hero"]["content"]["body"] == f"<h1>{body}</h1>", locale


def test_without_consent_the_default_is_shown(client: ApiClient, workspace: NewWorkspace, rapport: Rapport) -> None:
    setup(client, workspace)
    person(client, workspace, "u1", {"first_name": "Ada"}, [{"revenue": 150}], consented=False)
    full = decide(client, workspace, {"user_id": "u1", "placements": ["home_hero"]}, full=True)["home_hero"]
    assert full["block"] == "hero_default" and full["reason"]["kind"] == "consent_fallback"
    before = rapport.db.read(lambda c: c.value("SELECT count(*) FROM profiles WHERE workspace_id = ?",
                                               (workspace.workspace_id,)))
    unknown = decide(client, workspace, {"anonymous_id": "never-seen", "placements": ["home_hero"]})
    assert unknown["home_hero"]["block"] == "hero_default"
    assert unknown["home_hero"]["reason"] == {"kind": "default"}
    after = rapport.db.read(lambda c: c.value("SELECT count(*) FROM profiles WHERE workspace_id = ?",
                                              (workspace.workspace_id,)))
    assert after == before


def test_bought_products_and_caps_are_guardrails(client: ApiClient, workspace: NewWorkspace,
                                                 rapport: Rapport) -> None:
    setup(client, workspace)
    person(client, workspace, "u1", {}, [{"revenue": 10, "products": [{"product_id": "sofa-1"}]}])
    person(client, workspace, "u2", {}, [{"revenue": 10, "products": [{"product_id": "lamp-2"}]}])
    assert decide(client, workspace, {"user_id": "u2", "placements": ["banner"]})["banner"]["block"] == "banner_sofa"
    assert track(client, workspace, "/v1/track", {"userId": "u2", "event": "Product Returned",
                                                  "properties": {"product_id": "sofa-1"}}).status_code == 200
    returned = decide(client, workspace, {"user_id": "u2", "placements": ["banner"]}, full=True)["banner"]
    assert returned["block"] == "banner_capped"
    assert returned["guardrails"][0]["why"] == "already_bought_or_returned"
    seen = []
    for _ in range(3):
        out = decide(client, workspace, {"user_id": "u1", "placements": ["banner"]}, full=True)["banner"]
        rapport.db.write(lambda c: None)  # the impressions' group commit has landed
        seen.append(out["block"])
    assert seen == ["banner_capped", "banner_capped", "banner_default"]
    why = {g["block"]: g["why"] for g in out["guardrails"]}
    assert why == {"banner_sofa": "already_bought_or_returned", "banner_capped": "cap_reached"}


def test_errors_use_the_one_shape(client: ApiClient, workspace: NewWorkspace) -> None:
    setup(client, workspace)
    headers = basic(workspace.write_key)
    body = assert_error(client.post("/api/v1/decide", json={"user_id": "u1", "placements": ["hero"]},
                                    headers=headers), 404, "placement_not_found")
    # A write key is public: the error does not list the workspace's placements; an admin's does.
    assert body["details"] == [{"placement": "hero"}] and "home_hero" not in body["message"]
    body = assert_error(client.post("/api/v1/decide", json={"user_id": "u1", "placements": ["hero"]},
                                    headers=bearer(workspace.admin_token)), 404, "placement_not_found")
    assert body["details"] == [{"placement": "hero"}] and "home_hero" in body["message"]
    tracked = track(client, workspace, "/v1/track?decide=hero", {"userId": "u1", "event": "Viewed"})
    assert "home_hero" not in assert_error(tracked, 404, "placement_not_found")["message"]
    assert_error(client.post("/api/v1/decide", json={"profile_id": "prf_x", "placements": ["home_hero"]},
                             headers=headers), 400, "invalid_request")
    assert_error(client.post("/api/v1/decide", json={"user_id": "u1"}, headers=headers), 400, "invalid_request")
    assert_error(client.post("/api/v1/decide", content=b"{", headers=headers), 400, "invalid_json")
    assert_error(client.post("/api/v1/decide", json={"user_id": "u1", "placements": ["home_hero"]}), 401,
                 "missing_credentials")


@pytest.mark.parametrize("seed", range(3))
def test_a_write_key_response_never_carries_profile_data(client: ApiClient, workspace: NewWorkspace,
                                                         seed: int) -> None:
    setup(client, workspace, """
---
kind: ComputedTrait
name: orders_total
event: Order Completed
aggregate: count
---
kind: ContentBlock
name: plain
channel: web
body: "Hello"
when: traits.vip_code != "x"
---
kind: Placement
name: by_trait
channel: web
default: plain
variants:
  - {block: hero_bold, when: traits.vip_code == "SECRET-VIP-SEED"}
""".replace("SEED", str(seed)) + EXPERIMENT)
    secret_trait = f"SECRET-VIP-{seed}"
    revenue = 7_919_000 + seed
    pid = person(client, workspace, f"user-{seed}-zq", {"vip_code": secret_trait, "email": f"ada{seed}@mail.example",
                                                        "first_name": "Ada"},
                 [{"revenue": revenue, "products": [{"product_id": "sofa-1"}]}])
    names = ["home_hero", "banner", "by_trait", "promo"]
    for context in ({}, {"device": "mobile"}):
        for identity in ({"user_id": f"user-{seed}-zq"}, {"anonymous_id": f"anon-{seed}-zq"}):
            body = proven(client, workspace, {**identity, "placements": names, "context": context})
            response = client.post("/api/v1/decide", json=body, headers=basic(workspace.write_key))
            assert response.status_code == 200
            text = response.text
            for value in (secret_trait, str(revenue), pid, f"user-{seed}-zq", f"anon-{seed}-zq", "user_hash",
                          f"ada{seed}@mail.example", "sofa-1", "guardrails", "confidence", "score"):
                assert value not in text, (value, text)
            for decision in response.json()["decisions"].values():
                assert set(decision) == {"placement", "block", "content", "reason"}
                assert set(decision["reason"]) <= {"kind", "experiment", "variant"}
    full = decide(client, workspace, {"user_id": f"user-{seed}-zq", "placements": names}, full=True)
    assert full["by_trait"]["block"] == "hero_bold"


def test_the_tracking_round_trip_returns_decisions(client: ApiClient, workspace: NewWorkspace) -> None:
    setup(client, workspace)
    pid = person(client, workspace, "u1", {"first_name": "Ada"})
    proof = user_hash(client, workspace, "u1")
    response = track(client, workspace, f"/v1/track?decide=home_hero,banner&user_hash={proof}",
                     {"userId": "u1", "event": "Order Completed", "properties": {"revenue": 500}})
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["success"] is True
    assert out["decisions"]["home_hero"] == {"placement": "home_hero", "block": "hero_vip",
                                             "content": {"body": "<h1>Welcome back, Ada</h1>"},
                                             "reason": {"kind": "rule"}}
    assert pid not in response.text
    assert track(client, workspace, "/v1/track", {"userId": "u1", "event": "Viewed"}).json() == {"success": True}
    bad = track(client, workspace, "/v1/track?decide=nope", {"userId": "u1", "event": "Viewed"})
    assert_error(bad, 404, "placement_not_found")


def test_content_show_lists_the_fields_read(client: ApiClient, workspace: NewWorkspace) -> None:
    setup(client, workspace)
    shown = admin(client, workspace, "GET", "/api/v1/content/hero_vip")
    assert shown.status_code == 200, shown.text
    assert shown.json()["reads"] == ["traits.first_name"] and shown.json()["locales"] == ["de"]
    placement = admin(client, workspace, "GET", "/api/v1/content/home_hero").json()
    assert placement["kind"] == "Placement" and "traits.first_name" in placement["reads"]
    assert_error(admin(client, workspace, "GET", "/api/v1/content/hero_vp"), 404, "content_not_found")
    assert {b["name"] for b in admin(client, workspace, "GET", "/api/v1/content").json()["blocks"]} >= {"hero_vip"}


def test_experiment_on_a_placement_keeps_the_variant_across_a_merge(client: ApiClient, workspace: NewWorkspace,
                                                                    rapport: Rapport) -> None:
    setup(client, workspace, """
---
kind: Metric
name: converted_7d
type: conversion
event: Order Completed
window: 7d
---
kind: Experiment
name: hero_test
placement: home_hero
purpose: personalization
salt: hero-2026
variants:
  control: {weight: 50}
  bold: {weight: 50, block: hero_bold}
metrics: [converted_7d]
""")
    arms: dict[str, str] = {}
    for n in range(24):
        anon = f"anon-{n}"
        assert track(client, workspace, "/v1/page", {"anonymousId": anon, "name": "Home"}).status_code == 200
        grant(client, workspace, str(profile_of(client, workspace, anonymous_id=anon)["id"]))
        out = decide(client, workspace, {"anonymous_id": anon, "placements": ["home_hero"]})["home_hero"]
        assert out["reason"]["experiment"] == "hero_test"
        arms[anon] = out["reason"]["variant"]
        assert out["block"] == ("hero_bold" if arms[anon] == "bold" else "hero_new")
        if arms[anon] == "control":
            assert out["reason"]["kind"] == "rule"
    assert set(arms.values()) == {"control", "bold"}
    rapport.db.write(lambda c: None)
    rows = rapport.db.read(lambda c: c.all(
        "SELECT variant, source, exposures FROM experiment_exposures WHERE workspace_id = ?",
        (workspace.workspace_id,)))
    assert len(rows) == 24 and {r[1] for r in rows} == {"placement:home_hero"}
    assert sorted(r[0] for r in rows) == sorted(arms.values())
    for anon, arm in list(arms.items())[:6]:
        user = f"user-of-{anon}"
        # An identified profile with its own history is merged with the anonymous one.
        assert track(client, workspace, "/v1/identify", {"userId": user, "traits": {}}).status_code == 200
        assert track(client, workspace, "/v1/identify", {"userId": user, "anonymousId": anon}).status_code == 200
        again = decide(client, workspace, {"user_id": user, "placements": ["home_hero"]})["home_hero"]
        assert again["reason"]["variant"] == arm, anon


def test_a_stopped_experiment_gives_everyone_the_control(client: ApiClient, workspace: NewWorkspace) -> None:
    experiment = """
---
kind: Metric
name: converted_7d
type: conversion
event: Order Completed
window: 7d
---
kind: Experiment
name: hero_test
placement: home_hero
purpose: personalization
status: stopped
variants:
  control: {weight: 1}
  bold: {weight: 99, block: hero_bold}
metrics: [converted_7d]
"""
    setup(client, workspace, experiment)
    person(client, workspace, "u1")
    full = decide(client, workspace, {"user_id": "u1", "placements": ["home_hero"]}, full=True)["home_hero"]
    assert full["block"] == "hero_new"
    assert full["reason"]["skipped_experiments"] == [{"experiment": "hero_test", "why": "stopped"}]


def test_each_person_gets_their_own_rule(client: ApiClient, workspace: NewWorkspace) -> None:
    setup(client, workspace)
    for n in range(3):
        person(client, workspace, f"u{n}", {}, [{"revenue": 60 * n}])
    blocks = [decide(client, workspace, {"user_id": f"u{n}", "placements": ["home_hero"]})["home_hero"]["block"]
              for n in range(3)]
    assert blocks == ["hero_default", "hero_default", "hero_vip"]


def test_the_content_commands(client: ApiClient, rapport: Rapport, workspace: NewWorkspace, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    setup(client, workspace)
    person(client, workspace, "u1", {"first_name": "Ada"}, [{"revenue": 150}])
    monkeypatch.setenv("RAPPORT_DATABASE_URL", rapport.settings.database_url)
    monkeypatch.setenv("RAPPORT_DATA_DIR", str(tmp_path / "cli"))
    assert rapport.settings.master_key is not None
    monkeypatch.setenv("RAPPORT_MASTER_KEY", str(rapport.settings.master_key))
    runner = CliRunner()
    ws = workspace.workspace_id
    listed = runner.invoke(cli, ["content", "list", "-w", ws])
    assert listed.exit_code == 0, listed.output
    assert "placement  home_hero" in listed.stdout and "reads: traits.first_name" in listed.stdout
    shown = runner.invoke(cli, ["content", "show", "hero_vip", "-w", ws])
    assert shown.exit_code == 0 and json.loads(shown.stdout)["reads"] == ["traits.first_name"]
    decided = runner.invoke(cli, ["content", "decide", "-w", ws, "--user-id", "u1", "-p", "home_hero",
                                  "--context", '{"device": "desktop"}', "--locale", "de-AT"])
    assert decided.exit_code == 0, decided.output
    out = json.loads(decided.stdout)
    assert out["decisions"]["home_hero"]["content"] == {"body": "<h1>Willkommen zurück, Ada</h1>"}
    assert out["decisions"]["home_hero"]["confidence"] == 1.0 and out["profile_id"]
    assert out["dry_run"] is True  # a preview unless --record
    secret = runner.invoke(cli, ["workspace", "identity-secret", "-w", ws])
    assert secret.exit_code == 0, secret.output
    assert secret.stdout.strip() == admin(client, workspace, "GET", "/api/v1/settings/identity-secret").json()[
        "identity_secret"]
    recorded = runner.invoke(cli, ["content", "decide", "-w", ws, "--user-id", "u1", "-p", "home_hero", "--record"])
    assert recorded.exit_code == 0, recorded.output
    assert "dry_run" not in json.loads(recorded.stdout)
    assert runner.invoke(cli, ["content", "show", "nope", "-w", ws]).exit_code == 1


RANKED = """
---
kind: ComputedTrait
name: orders_90d
event: Order Completed
aggregate: count
window: 90d
---
kind: Model
name: sofa_buyer
target: {event: Order Completed, within: 30d}
features: [orders_90d]
---
kind: Model
name: rug_buyer
target: {event: Order Completed, within: 30d}
features: [orders_90d]
---
kind: ContentBlock
name: rug
channel: web
body: "Rugs for you"
value: 100
---
kind: Placement
name: offers
channel: web
default: banner_default
rank:
  - {block: rug, model: rug_buyer}
  - {block: banner_sofa, model: sofa_buyer, value: 300}
"""


def model(name: str, coefficient: float) -> ScoringModel:
    """A trained model whose log-odds grow with orders_90d by ``coefficient``."""
    return ScoringModel(name, 4, ("orders_90d",), (0.0,), (1.0,), (coefficient,), (0.0,), -2.0,
                        Calibration("identity"))


def test_offers_are_ranked_by_propensity_times_value(client: ApiClient, workspace: NewWorkspace,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    setup(client, workspace, RANKED)
    trained = {"sofa_buyer": model("sofa_buyer", 0.1), "rug_buyer": model("rug_buyer", 1.0)}
    monkeypatch.setattr(models_service, "scoring_models", lambda conn, rt: trained)
    person(client, workspace, "u1", {}, [{"revenue": 10}, {"revenue": 10}, {"revenue": 10}])
    full = decide(client, workspace, {"user_id": "u1", "placements": ["offers"]}, full=True)["offers"]
    rug = 1 / (1 + math.exp(-(-2.0 + 3 * 1.0)))
    sofa = 1 / (1 + math.exp(-(-2.0 + 3 * 0.1)))
    assert rug * 100 > sofa * 300
    assert full["block"] == "rug" and full["reason"]["kind"] == "rank"
    assert full["reason"]["model"] == "rug_buyer" and full["reason"]["model_version"] == 4
    assert full["confidence"] == pytest.approx(rug) and full["reason"]["expected_value"] == pytest.approx(rug * 100)
    assert full["reason"]["top_reasons"] == [{"feature": "orders_90d", "value": 3.0, "contribution": 3.0}]
    ask = proven(client, workspace, {"user_id": "u1", "placements": ["offers"]})
    response = client.post("/api/v1/decide", json=ask, headers=basic(workspace.write_key))
    assert response.json()["decisions"]["offers"]["reason"] == {"kind": "rank"}
    assert "orders_90d" not in response.text and str(round(rug, 3))[:5] not in response.text
    trained["sofa_buyer"] = model("sofa_buyer", 1.0)
    assert decide(client, workspace, {"user_id": "u1", "placements": ["offers"]})["offers"]["block"] == "banner_sofa"


def test_people_in_the_global_holdout_enter_no_experiment(client: ApiClient, workspace: NewWorkspace,
                                                          rapport: Rapport) -> None:
    from rapport.experiments.assign import GlobalHoldout

    setup(client, workspace, EXPERIMENT)
    response = admin(client, workspace, "PATCH", "/api/v1/settings",
                     json={"global_holdout": {"salt": "gh-decide", "percent": 40}})
    assert response.status_code == 200, response.text
    holdout = GlobalHoldout("gh-decide", 40)
    held = 0
    for n in range(20):
        anon = f"gh-anon-{n}"
        assert track(client, workspace, "/v1/page", {"anonymousId": anon, "name": "Home"}).status_code == 200
        pid = str(profile_of(client, workspace, anonymous_id=anon)["id"])
        grant(client, workspace, pid)
        out = decide(client, workspace, {"anonymous_id": anon, "placements": ["promo"]}, full=True)["promo"]
        if holdout.holds(pid):
            held += 1
            # The placement's own choice, and no variant.
            assert out["block"] == "promo_default", out
            assert (out["reason"]["variant"], out["reason"]["assignment"]) == (None, "global_holdout")
        else:
            assert out["reason"]["experiment"] == "promo_test" and out["reason"]["variant"] in {"control", "bold"}
    assert 0 < held < 20
    rapport.db.write(lambda c: None)
    reasons = dict(rapport.db.read(lambda c: c.all(
        "SELECT reason, count(*) FROM experiment_assignments WHERE workspace_id = ? GROUP BY reason",
        (workspace.workspace_id,))))
    assert reasons.get("global_holdout", 0) == held


def test_an_offer_needs_its_models_purpose_and_audience(client: ApiClient, workspace: NewWorkspace,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ranked = RANKED.replace("name: rug_buyer\n", "name: rug_buyer\npurpose: marketing_email\n").replace(
        "name: sofa_buyer\n", "name: sofa_buyer\naudience: computed.orders_90d >= 5\n")
    setup(client, workspace, ranked)
    trained = {"sofa_buyer": model("sofa_buyer", 1.0), "rug_buyer": model("rug_buyer", 1.0)}
    monkeypatch.setattr(models_service, "scoring_models", lambda conn, rt: trained)
    pid = person(client, workspace, "u1", {}, [{"revenue": 10}, {"revenue": 10}, {"revenue": 10}])
    full = decide(client, workspace, {"user_id": "u1", "placements": ["offers"]}, full=True)["offers"]
    assert full["block"] == "banner_default"
    assert [(g["block"], g["why"]) for g in full["guardrails"]] == [("rug", "no_consent"),
                                                                     ("banner_sofa", "not_in_audience")]
    grant(client, workspace, pid, "marketing_email")
    assert decide(client, workspace, {"user_id": "u1", "placements": ["offers"]})["offers"]["block"] == "rug"


def test_a_consent_fallback_leaves_no_impression(client: ApiClient, workspace: NewWorkspace,
                                                 rapport: Rapport) -> None:
    setup(client, workspace, """
---
kind: Placement
name: news
channel: web
default: banner_capped
""")
    person(client, workspace, "u1", consented=False)
    consented = person(client, workspace, "u2")
    for user in ("u1", "u2"):
        assert decide(client, workspace, {"user_id": user, "placements": ["news"]})["news"]["block"] == \
            "banner_capped"
    rapport.db.write(lambda c: None)  # the impressions' group commit has landed
    stored = rapport.db.read(lambda c: c.all("SELECT profile_id FROM content_impressions WHERE workspace_id = ?",
                                             (workspace.workspace_id,)))
    assert [str(r[0]) for r in stored] == [consented]


def test_a_dry_run_assigns_and_records_nothing(client: ApiClient, workspace: NewWorkspace, rapport: Rapport) -> None:
    setup(client, workspace, EXPERIMENT.replace("name: promo_default\nchannel: web\n",
                                                "name: promo_default\nchannel: web\ncap: {count: 5, per: 1d}\n"))
    person(client, workspace, "u1")
    ws = workspace.workspace_id
    counts = "SELECT (SELECT count(*) FROM experiment_assignments WHERE workspace_id = ?)," \
             " (SELECT count(*) FROM experiment_exposures WHERE workspace_id = ?)," \
             " (SELECT count(*) FROM content_impressions WHERE workspace_id = ?)"
    body = {"user_id": "u1", "placements": ["promo"], "dry_run": True}
    response = client.post("/api/v1/decide", json=body, headers=bearer(workspace.admin_token))
    assert response.status_code == 200, response.text
    preview = response.json()
    assert preview["dry_run"] is True
    assert preview["decisions"]["promo"]["reason"]["variant"] in {"control", "bold"}
    rapport.db.write(lambda c: None)
    assert tuple(rapport.db.read(lambda c: c.one(counts, (ws, ws, ws)))) == (0, 0, 0)
    assert_error(client.post("/api/v1/decide", json=body, headers=basic(workspace.write_key)), 400,
                 "invalid_request")
    real = decide(client, workspace, {"user_id": "u1", "placements": ["promo"]}, full=True)["promo"]
    assert real["reason"]["variant"] == preview["decisions"]["promo"]["reason"]["variant"]
    rapport.db.write(lambda c: None)
    capped = int(real["block"] == "promo_default")
    assert tuple(rapport.db.read(lambda c: c.one(counts, (ws, ws, ws)))) == (1, 1, capped)


def test_stored_assignments_are_read_in_one_query(client: ApiClient, workspace: NewWorkspace,
                                                  rapport: Rapport) -> None:
    from rapport.content.compile import library
    from rapport.decisions import service
    from rapport.types import WorkspaceId

    second = EXPERIMENT.split("---\nkind: Experiment")[1].replace("name: promo_test", "name: promo_second")
    setup(client, workspace, EXPERIMENT + "---\nkind: Experiment" + second)
    person(client, workspace, "u1")
    decide(client, workspace, {"user_id": "u1", "placements": ["promo"]})
    rt = rapport.runtime(WorkspaceId(workspace.workspace_id))
    [promo] = service.placements_of(library(rt), ["promo"])
    statements: list[str] = []

    class Counting:
        def __init__(self, conn: Any) -> None:
            self.conn = conn

        def __getattr__(self, name: str) -> Any:
            method = getattr(self.conn, name)
            if not callable(method):
                return method

            def call(sql: str, *args: Any, **kwargs: Any) -> Any:
                statements.append(sql)
                return method(sql, *args, **kwargs)
            return call

    def load(conn: Any) -> service.Loaded:
        pid = service.find_profile(conn, rt.id, "user_id", "u1")
        return service.load_person(Counting(conn), rt, rapport.keyring, [promo], pid, {}, None,
                                   rapport.clock.now_ms())

    loaded = rapport.db.read(load)
    assert set(loaded.assignments) == {"promo_test", "promo_second"}
    assert sum("experiment_assignments" in sql for sql in statements) == 1


def test_a_write_key_asks_by_user_id_only_with_its_user_hash(client: ApiClient, workspace: NewWorkspace,
                                                             rapport: Rapport) -> None:
    setup(client, workspace)
    person(client, workspace, "u1", {"first_name": "Ada"}, [{"revenue": 150}])
    assert track(client, workspace, "/v1/identify", {"userId": "u1", "anonymousId": "anon-7f3"}).status_code == 200
    ask = {"user_id": "u1", "placements": ["home_hero"]}
    headers = basic(workspace.write_key)
    # Without it anyone holding the public write key could read what any user id is shown ("Welcome back, Ada").
    for body in (ask, {**ask, "user_hash": "0" * 64}, {**ask, "user_hash": user_hash(client, workspace, "u2")}):
        refused = assert_error(client.post("/api/v1/decide", json=body, headers=headers), 403,
                               "identity_not_verified")
        assert "Ada" not in json.dumps(refused) and refused["details"] == [{"field": "user_hash"}]
    verified = client.post("/api/v1/decide", json=proven(client, workspace, ask), headers=headers)
    assert verified.json()["decisions"]["home_hero"]["content"]["body"] == "<h1>Welcome back, Ada</h1>"
    # The browser's own anonymous id (random, tied to the person by identify) needs no proof.
    by_anonymous = decide(client, workspace, {"anonymous_id": "anon-7f3", "placements": ["home_hero"]})
    assert by_anonymous["home_hero"]["content"]["body"] == "<h1>Welcome back, Ada</h1>"
    assert decide(client, workspace, ask, full=True)["home_hero"]["block"] == "hero_vip"  # an admin token needs none
    # The round trip decides for a verified userId, else the message's anonymousId, else refuses to store it.
    ws = workspace.workspace_id
    stored = "SELECT count(*) FROM events WHERE workspace_id = ? AND name = 'Viewed'"
    unproven = track(client, workspace, "/v1/track?decide=home_hero", {"userId": "u1", "event": "Viewed"})
    assert_error(unproven, 403, "identity_not_verified")
    assert rapport.db.read(lambda c: c.value(stored, (ws,))) == 0
    wrong = track(client, workspace, "/v1/track?decide=home_hero&user_hash=00",
                  {"userId": "u1", "anonymousId": "anon-7f3", "event": "Viewed"})
    assert wrong.status_code == 200 and wrong.json()["decisions"]["home_hero"]["block"] == "hero_vip"
    assert rapport.db.read(lambda c: c.value(stored, (ws,))) == 1
    # A workspace may turn the check off (a server-side caller that holds the write key privately).
    assert admin(client, workspace, "PATCH", "/api/v1/settings",
                 json={"identity_verification": False}).status_code == 200
    rapport.invalidate(WorkspaceId(ws))
    assert client.post("/api/v1/decide", json=ask, headers=headers).status_code == 200
    assert admin(client, workspace, "GET", "/api/v1/settings/identity-secret").json()["required"] is False


def test_the_identity_secret_is_for_admins_and_each_read_is_audited(client: ApiClient, workspace: NewWorkspace,
                                                                    rapport: Rapport) -> None:
    first = admin(client, workspace, "GET", "/api/v1/settings/identity-secret")
    assert first.status_code == 200 and len(bytes.fromhex(first.json()["identity_secret"])) == 32
    assert first.json()["required"] is True
    again = admin(client, workspace, "GET", "/api/v1/settings/identity-secret")
    assert again.json()["identity_secret"] == first.json()["identity_secret"]
    marketer = rapport.create_token(workspace.workspace_id, "marketer", "m", "test")
    assert_error(client.get("/api/v1/settings/identity-secret", headers=bearer(marketer)), 403, "forbidden")
    assert_error(client.get("/api/v1/settings/identity-secret", headers=basic(workspace.write_key)), 401,
                 "missing_credentials")
    entries = admin(client, workspace, "GET", "/api/v1/audit").json()["entries"]
    assert [e["action"] for e in entries].count("settings.identity_secret.read") == 2


def test_the_identity_secret_rotates_with_a_grace_period(client: ApiClient, workspace: NewWorkspace,
                                                         rapport: Rapport, clock: FrozenClock, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAPPORT_DATABASE_URL", rapport.settings.database_url)
    monkeypatch.setenv("RAPPORT_DATA_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("RAPPORT_MASTER_KEY", str(rapport.settings.master_key))
    setup(client, workspace)
    person(client, workspace, "u1", {"first_name": "Ada"})
    ask = {"user_id": "u1", "placements": ["home_hero"]}
    headers = basic(workspace.write_key)

    def status(body: dict[str, Any]) -> int:
        return client.post("/api/v1/decide", json=body, headers=headers).status_code

    old = proven(client, workspace, ask)
    assert status(old) == 200
    rotated = admin(client, workspace, "POST", "/api/v1/settings/identity-secret/rotate", json={"grace": "1h"})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["version"] == 2 and rotated.json()["previous_accepted_until"] == to_iso(clock.now_ms() + HOUR)
    assert rotated.json()["identity_secret"] != old["user_hash"]
    assert admin(client, workspace, "GET", "/api/v1/settings/identity-secret").json() == rotated.json()
    new = proven(client, workspace, ask)
    assert new["user_hash"] != old["user_hash"]
    # Both pass while the customer's servers move to the new secret; then only the new one.
    assert status(new) == 200 and status(old) == 200
    clock.advance(HOUR)
    assert status(new) == 200 and status(old) == 403
    # After a leak: rotate with no grace, and the leaked secret's hashes stop at once.
    leaked = admin(client, workspace, "POST", "/api/v1/settings/identity-secret/rotate", json={"grace": "0"})
    assert leaked.json()["version"] == 3 and leaked.json()["previous_accepted_until"] is None
    newest = proven(client, workspace, ask)
    assert status(newest) == 200 and status(new) == 403
    # The CLI rotates too and prints the new secret.
    runner = CliRunner()
    by_cli = runner.invoke(cli, ["workspace", "identity-secret", "-w", workspace.workspace_id, "--rotate"])
    assert by_cli.exit_code == 0, by_cli.output
    rapport.invalidate(WorkspaceId(workspace.workspace_id))
    shown = admin(client, workspace, "GET", "/api/v1/settings/identity-secret").json()
    assert shown["version"] == 4 and shown["identity_secret"] == by_cli.stdout.strip()
    assert status(proven(client, workspace, ask)) == 200
    refused = runner.invoke(cli, ["workspace", "identity-secret", "-w", workspace.workspace_id, "--grace", "1h"])
    assert refused.exit_code != 0 and "--grace goes with --rotate" in refused.output
    for bad, code in (({"grace": "31d"}, "invalid_request"), ({"grace": "soon"}, "invalid_duration"),
                      ({"grace": 5}, "invalid_request"), ({"period": "1h"}, "invalid_request")):
        assert_error(admin(client, workspace, "POST", "/api/v1/settings/identity-secret/rotate", json=bad), 400,
                     code)
    marketer = rapport.create_token(workspace.workspace_id, "marketer", "m", "test")
    assert_error(client.post("/api/v1/settings/identity-secret/rotate", headers=bearer(marketer)), 403, "forbidden")
    actions = [e["action"] for e in admin(client, workspace, "GET", "/api/v1/audit").json()["entries"]]
    assert actions.count("settings.identity_secret.rotate") == 3


def test_caps_count_impressions_across_a_merge_and_back(client: ApiClient, workspace: NewWorkspace,
                                                        rapport: Rapport) -> None:
    setup(client, workspace, """
---
kind: Placement
name: capped_only
channel: web
default: banner_default
variants:
  - {block: banner_capped, when: computed.revenue_total >= 0}
""")
    person(client, workspace, "u1")
    assert track(client, workspace, "/v1/page", {"anonymousId": "anon-9", "name": "Home"}).status_code == 200
    grant(client, workspace, str(profile_of(client, workspace, anonymous_id="anon-9")["id"]))

    def shown(identity: dict[str, str]) -> str:
        block = decide(client, workspace, {**identity, "placements": ["capped_only"]})["capped_only"]["block"]
        rapport.db.write(lambda c: None)  # the impression's group commit has landed
        return str(block)

    # Seen twice (the cap) as an anonymous visitor; once the visitor signs in, those count for the person.
    assert [shown({"anonymous_id": "anon-9"}) for _ in range(2)] == ["banner_capped"] * 2
    assert shown({"user_id": "u1"}) == "banner_capped"
    assert track(client, workspace, "/v1/identify", {"userId": "u1", "anonymousId": "anon-9"}).status_code == 200
    root = str(profile_of(client, workspace, user_id="u1")["id"])
    assert shown({"user_id": "u1"}) == "banner_default"
    # Undoing the merge gives each side back its own impressions: the person has seen the block once.
    [merge] = admin(client, workspace, "GET", f"/api/v1/profiles/{root}/merges").json()["merges"]
    undone = admin(client, workspace, "POST", f"/api/v1/profiles/{root}/unmerge", json={"merge_id": merge["id"]})
    assert undone.status_code == 200, undone.text
    assert shown({"user_id": "u1"}) == "banner_capped"
    assert shown({"user_id": "u1"}) == "banner_default"
    assert shown({"anonymous_id": "anon-9"}) == "banner_default"
