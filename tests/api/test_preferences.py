"""The preference center and RFC 8058 one-click unsubscribe through signed per-person links."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.support import NOW, ApiClient, admin, apply_yaml, assert_error, profile_of, timeline, track
from rapport.clock import FrozenClock, to_iso
from rapport.consent import links
from rapport.consent.decide import may_use
from rapport.consent.model import LedgerEntry
from rapport.core import NewWorkspace, Rapport
from rapport.errors import ValidationError
from rapport.storage.sql import consent as consent_sql
from rapport.types import DAY, MINUTE, ProfileId, WorkspaceId

BASE = "https://prefs.example"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
JSON = {"Accept": "application/json"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
           "User-Agent": "Mozilla/5.0 (Test)"}
EVIL = '<script>alert("x")</script> & <b>bold</b>'


def person(client: ApiClient, ws: NewWorkspace, user_id: str = "u1", **traits: Any) -> str:
    response = track(client, ws, "/v1/identify", {"userId": user_id, "traits": traits})
    assert response.status_code == 200, response.text
    pid: str = profile_of(client, ws, user_id=user_id)["id"]
    return pid


def grant(client: ApiClient, ws: NewWorkspace, pid: str, purpose: str, state: str = "granted") -> None:
    response = admin(client, ws, "POST", "/api/v1/consent",
                     json={"profile_id": pid, "purpose": purpose, "state": state})
    assert response.status_code == 201, response.text


def link(rapport: Rapport, ws: NewWorkspace, pid: str, purpose: str | None = None, at: int = NOW) -> str:
    """The link's path and query (the test client talks to the app directly)."""
    url = links.make_link(BASE, rapport.runtime(ws.workspace_id), pid, at, keyring=rapport.keyring, purpose=purpose)
    assert url.startswith(BASE + "/")
    return url[len(BASE):]


def form(pairs: list[tuple[str, str]], **headers: str) -> dict[str, Any]:
    """Request arguments for a urlencoded form that repeats a field (httpx's ``data`` takes a mapping)."""
    return {"content": urlencode(pairs).encode(),
            "headers": {"Content-Type": "application/x-www-form-urlencoded", **headers}}


def token_of(path: str) -> str:
    return path.split("/")[2].split("?")[0]


def ledger(rapport: Rapport, ws: NewWorkspace, pid: str) -> list[LedgerEntry]:
    rows = rapport.db.read(lambda c: consent_sql.entries(c, ws.workspace_id, [pid]))
    return [consent_sql.ledger_entry(r) for r in rows]


def all_ledger_rows(rapport: Rapport, ws: NewWorkspace) -> list[tuple[Any, ...]]:
    return rapport.db.read(lambda c: c.all(
        "SELECT * FROM consent_ledger WHERE workspace_id = ? ORDER BY seq", (ws.workspace_id,)))


def decision(rapport: Rapport, ws: NewWorkspace, pid: str, purpose: str, at: int) -> Any:
    return may_use(ledger(rapport, ws, pid), rapport.runtime(ws.workspace_id).catalog.get(purpose), at)


def states(response: httpx.Response) -> dict[str, bool]:
    assert response.status_code == 200, response.text
    return {p["purpose"]: p["allowed"] for p in response.json()["purposes"]}


# --- one-click unsubscribe ------------------------------------------------------------------------


def test_get_unsubscribe_shows_a_confirmation_form_and_changes_nothing(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    grant(client, workspace, pid, "marketing_email")
    before = all_ledger_rows(rapport, workspace)
    path = link(rapport, workspace, pid, "marketing_email")
    for _ in range(3):  # mail scanners and link previewers follow a link more than once
        page = client.get(path, headers=BROWSER)
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert f'<form method="post" action="{path.replace("&", "&amp;")}">' in page.text
        assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page.text
        assert "Marketing messages by email" in page.text and "On: you agreed" in page.text
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["referrer-policy"] == "no-referrer"
    assert all_ledger_rows(rapport, workspace) == before
    assert decision(rapport, workspace, pid, "marketing_email", NOW).allowed is True


def test_one_click_post_withdraws_consent_within_the_request_with_provenance(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace, clock: FrozenClock) -> None:
    pid = person(client, workspace)
    grant(client, workspace, pid, "marketing_email")
    issued = clock.now_ms()
    path = link(rapport, workspace, pid, "marketing_email", at=issued)
    clock.advance(3 * DAY)
    response = client.post(path, data=ONE_CLICK, headers={"User-Agent": "Mail/1.0"})
    assert response.status_code == 200, response.text
    assert "is now off for you" in response.text

    entries = ledger(rapport, workspace, pid)
    assert len(entries) == 2
    entry = entries[-1]
    assert (entry.purpose, entry.state, entry.source) == ("marketing_email", "withdrawn", "unsubscribe_link")
    assert entry.recorded_at == entry.effective_at == issued + 3 * DAY
    assert entry.proof is not None
    assert entry.proof.startswith(f"link_issued_at={to_iso(issued)};client=sha256:")
    assert "Mail/1.0" not in entry.proof
    verdict = decision(rapport, workspace, pid, "marketing_email", clock.now_ms())
    assert (verdict.allowed, verdict.reason, verdict.entry) == (False, "withdrawn", entry)
    assert decision(rapport, workspace, pid, "marketing_email", issued + DAY).allowed is True
    history = admin(client, workspace, "GET", f"/api/v1/profiles/{pid}/consent").json()
    assert history["current"]["marketing_email"]["allowed"] is False


def test_a_second_one_click_post_adds_nothing(client: ApiClient, rapport: Rapport, workspace: NewWorkspace,
                                               clock: FrozenClock) -> None:
    pid = person(client, workspace)
    grant(client, workspace, pid, "marketing_sms")
    path = link(rapport, workspace, pid, "marketing_sms")
    first = client.post(path, data=ONE_CLICK, headers=JSON)
    assert first.json() == {"purpose": "marketing_sms", "state": "withdrawn", "recorded": True}
    clock.advance(MINUTE)
    second = client.post(path, data=ONE_CLICK, headers=JSON)
    assert second.status_code == 200
    assert second.json() == {"purpose": "marketing_sms", "state": "withdrawn", "recorded": False}
    assert [e.state for e in ledger(rapport, workspace, pid)] == ["granted", "withdrawn"]
    # The opt-out is an event on the person's timeline (once), for guardrails and journeys that read events.
    [event] = [e for e in timeline(client, workspace, pid) if e["name"] == "Unsubscribed"]
    assert event["message"]["properties"] == {"source": "unsubscribe_link", "purpose": "marketing_sms"}
    assert event["timestamp"] == to_iso(NOW)


def test_one_click_without_any_entry_records_an_explicit_withdrawal(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    path = link(rapport, workspace, pid, "marketing_push")
    assert client.post(path, data=ONE_CLICK, headers=JSON).json()["recorded"] is True
    assert decision(rapport, workspace, pid, "marketing_push", NOW).reason == "withdrawn"


def test_one_click_accepts_multipart_form_data_as_rfc_8058_recommends(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    grant(client, workspace, pid, "marketing_email")
    path = link(rapport, workspace, pid, "marketing_email")
    response = client.post(path, files={"List-Unsubscribe": (None, "One-Click")})
    assert response.status_code == 200, response.text
    assert response.request.headers["content-type"].startswith("multipart/form-data")
    assert decision(rapport, workspace, pid, "marketing_email", NOW).reason == "withdrawn"


@pytest.mark.parametrize("kwargs", [
    {},
    {"data": {"List-Unsubscribe": "Yes"}},
    {"content": b"List-Unsubscribe=One-Click", "headers": {"Content-Type": "text/plain"}},
], ids=["empty", "wrong-value", "wrong-content-type"])
def test_a_post_that_is_not_one_click_is_refused_and_changes_nothing(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace, kwargs: dict[str, Any]) -> None:
    pid = person(client, workspace)
    grant(client, workspace, pid, "marketing_email")
    before = all_ledger_rows(rapport, workspace)
    arguments = dict(kwargs)
    headers = {**JSON, **arguments.pop("headers", {})}
    response = client.post(link(rapport, workspace, pid, "marketing_email"), headers=headers, **arguments)
    assert_error(response, 400, "not_one_click" if "Content-Type" not in headers else "invalid_form")
    assert all_ledger_rows(rapport, workspace) == before


def test_an_unsubscribe_link_acts_on_its_own_purpose_only(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    grant(client, workspace, pid, "analytics")
    path = link(rapport, workspace, pid, "marketing_email")
    other = path.replace("purpose=marketing_email", "purpose=analytics")
    assert_error(client.post(other, data=ONE_CLICK, headers=JSON), 403, "link_scope")
    assert_error(client.get(other, headers=JSON), 403, "link_scope")
    shown = {"shown": "analytics"}
    assert_error(client.post(f"/preferences/{token_of(path)}", data=shown, headers=JSON), 403, "link_scope")
    assert_error(client.post(path.replace("marketing_email", "necessary"), data=ONE_CLICK, headers=JSON),
                 400, "invalid_preferences")
    assert_error(client.post(path.replace("marketing_email", "marketting"), data=ONE_CLICK, headers=JSON),
                 400, "unknown_purpose")
    assert decision(rapport, workspace, pid, "analytics", NOW).allowed is True
    # Without '?purpose=' the link's only purpose is meant.
    assert client.post(path.split("?")[0], data=ONE_CLICK, headers=JSON).json()["purpose"] == "marketing_email"


# --- the preference center ------------------------------------------------------------------------


def test_the_preference_page_lists_every_purpose_and_reflects_changes(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace, clock: FrozenClock) -> None:
    pid = person(client, workspace)
    grant(client, workspace, pid, "analytics")
    path = link(rapport, workspace, pid)
    page = client.get(path, headers=BROWSER)
    assert page.status_code == 200
    catalog = rapport.runtime(workspace.workspace_id).catalog
    for purpose in catalog:
        field = f'<input type="hidden" name="shown" value="{purpose.name}">'
        assert (field in page.text) is (purpose.name != "necessary"), purpose.name
        assert (purpose.description in page.text) is (purpose.name != "necessary")
    assert page.text.index("Subscriptions") < page.text.index("Marketing messages by email") \
        < page.text.index("How we may use your data") < page.text.index("Measure and analyse product usage")
    assert '<input type="checkbox" name="granted" value="analytics" checked>' in page.text
    assert '<input type="checkbox" name="granted" value="marketing_email">' in page.text
    assert states(client.get(path, headers=JSON)) == {
        "advertising": False, "analytics": True, "marketing_email": False, "marketing_push": False,
        "marketing_sms": False, "personalization": False}

    clock.advance(DAY)
    shown = [("shown", p.name) for p in catalog if p.name != "necessary"]
    chosen = [*shown, ("granted", "marketing_email"), ("granted", "personalization")]
    saved = client.post(path, **form(chosen, **BROWSER))
    assert saved.status_code == 200
    assert "Saved: 3 changes." in saved.text
    assert '<input type="checkbox" name="granted" value="marketing_email" checked>' in saved.text
    assert '<input type="checkbox" name="granted" value="analytics">' in saved.text
    changed = ledger(rapport, workspace, pid)[1:]
    assert sorted((e.purpose, e.state) for e in changed) == [
        ("analytics", "withdrawn"), ("marketing_email", "granted"), ("personalization", "granted")]
    assert {e.source for e in changed} == {"preference_center"}
    assert {e.recorded_at for e in changed} == {e.effective_at for e in changed} == {NOW + DAY}
    assert all(e.proof and e.proof.startswith(f"link_issued_at={to_iso(NOW)};") for e in changed)
    assert decision(rapport, workspace, pid, "analytics", NOW + DAY).reason == "withdrawn"
    assert states(client.get(path, headers=JSON)) == {
        "advertising": False, "analytics": False, "marketing_email": True, "marketing_push": False,
        "marketing_sms": False, "personalization": True}

    again = client.post(path, **form(chosen, **JSON))
    assert again.json()["changed"] == []
    assert len(ledger(rapport, workspace, pid)) == 4
    # Leaving a purpose is an Unsubscribed event; joining one is not.
    left = [e["message"]["properties"] for e in timeline(client, workspace, pid) if e["name"] == "Unsubscribed"]
    assert left == [{"source": "preference_center", "purpose": "analytics"}]


def test_the_preference_form_is_validated(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    path = link(rapport, workspace, pid)
    before = all_ledger_rows(rapport, workspace)
    assert_error(client.post(path, data={"shown": "analytics", "granted": "advertising"}, headers=JSON),
                 400, "invalid_preferences")
    assert_error(client.post(path, data={"shown": "nope", "granted": "nope"}, headers=JSON), 400, "unknown_purpose")
    assert_error(client.post(path, data={"shown": "necessary"}, headers=JSON), 400, "invalid_preferences")
    refused = client.post(path, data={"shown": "nope"}, headers=BROWSER)
    assert refused.status_code == 400 and refused.headers["content-type"].startswith("text/html")
    assert all_ledger_rows(rapport, workspace) == before


def test_pages_escape_purpose_descriptions(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    doc = f"kind: ConsentPurpose\nname: newsletter\nchannel: email\ndescription: '{EVIL}'\n"
    assert apply_yaml(client, workspace, doc).status_code == 200
    pid = person(client, workspace)
    for path in (link(rapport, workspace, pid), link(rapport, workspace, pid, "newsletter")):
        page = client.get(path, headers=BROWSER)
        assert page.status_code == 200, page.text
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page.text
        assert "<script" not in page.text and "<b>" not in page.text
    done = client.post(link(rapport, workspace, pid, "newsletter"), data=ONE_CLICK)
    assert "<script" not in done.text and "&lt;script&gt;" in done.text


def test_unticking_a_purpose_on_another_legal_basis_records_an_objection(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    doc = "kind: ConsentPurpose\nname: newsletter\nlegal_basis: legitimate_interest\ndescription: Our newsletter\n"
    assert apply_yaml(client, workspace, doc).status_code == 200
    pid = person(client, workspace)
    path = link(rapport, workspace, pid)
    page = client.get(path, headers=BROWSER).text
    assert '<input type="checkbox" name="granted" value="newsletter" checked>' in page
    assert "On: we rely on legitimate interest; untick to object" in page
    saved = client.post(path, data={"shown": "newsletter"}, headers=JSON)
    assert saved.json()["changed"] == ["newsletter"]
    verdict = decision(rapport, workspace, pid, "newsletter", NOW)
    assert (verdict.allowed, verdict.reason) == (False, "withdrawn")
    assert verdict.entry is not None and verdict.entry.legal_basis == "legitimate_interest"


def test_make_link_refuses_what_it_cannot_sign(rapport: Rapport, workspace: NewWorkspace) -> None:
    rt = rapport.runtime(workspace.workspace_id)
    with pytest.raises(ValidationError, match="must start with https://"):
        links.make_link("prefs.example", rt, "prf_1", NOW, keyring=rapport.keyring)
    with pytest.raises(ValidationError, match="always allowed"):
        links.make_link(BASE, rt, "prf_1", NOW, keyring=rapport.keyring, purpose="necessary")
    with pytest.raises(ValidationError, match="did you mean 'marketing_sms'"):
        links.make_link(BASE, rt, "prf_1", NOW, keyring=rapport.keyring, purpose="marketing_smss")


# --- refused links --------------------------------------------------------------------------------


def _flip(text: str, at: int) -> str:
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1:]


def test_tampered_tokens_are_refused_as_json_or_html(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    grant(client, workspace, pid, "marketing_email")
    before = all_ledger_rows(rapport, workspace)
    path = link(rapport, workspace, pid, "marketing_email")
    token = token_of(path)
    payload, mac = token.split(".")
    forged_payload = base64.urlsafe_b64encode(orjson.dumps(
        [1, workspace.workspace_id, pid, NOW, "*"])).decode().rstrip("=")
    cases = {
        "signature": (f"{payload}.{_flip(mac, 3)}", "invalid_link_signature"),
        "widened-scope": (f"{forged_payload}.{mac}", "invalid_link_signature"),
        "no-signature": (payload, "malformed_link"),
        "garbage": ("not-a-token", "malformed_link"),
        "bad-base64": (f"{payload}!.{mac}", "malformed_link"),
    }
    for name, (bad, code) in cases.items():
        bad_path = path.replace(token, bad)
        body = assert_error(client.post(bad_path, data=ONE_CLICK, headers=JSON), 403, code)
        assert body["message"], name
        assert_error(client.get(f"/preferences/{bad}", headers=JSON), 403, code)
        page = client.get(bad_path, headers=BROWSER)
        assert page.status_code == 403 and page.headers["content-type"].startswith("text/html"), name
        assert "This link cannot be used" in page.text
    assert all_ledger_rows(rapport, workspace) == before


def test_expired_and_future_links_are_refused(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    old = link(rapport, workspace, pid, "marketing_email", at=NOW - links.MAX_AGE - 1)
    body = assert_error(client.post(old, data=ONE_CLICK, headers=JSON), 410, "link_expired")
    assert body["details"] == [{"issued_at": to_iso(NOW - links.MAX_AGE - 1), "max_age_days": 400}]
    page = client.get(old, headers=BROWSER)
    assert page.status_code == 410 and "expired" in page.text
    edge = link(rapport, workspace, pid, "marketing_email", at=NOW - links.MAX_AGE)
    assert client.get(edge, headers=JSON).status_code == 200
    future = link(rapport, workspace, pid, at=NOW + links.CLOCK_SKEW + 1)
    assert_error(client.get(future, headers=JSON), 403, "link_not_yet_valid")
    assert ledger(rapport, workspace, pid) == []


def test_a_link_for_an_unknown_person_is_gone(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    path = link(rapport, workspace, "prf_never_existed")
    assert_error(client.get(path, headers=JSON), 410, "link_profile_gone")


def test_a_link_of_workspace_a_cannot_touch_workspace_b(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    other = rapport.create_workspace(workspace.workspace_id[:20] + "-b")
    pid_a = person(client, workspace)
    pid_b = person(client, other)
    grant(client, other, pid_b, "marketing_email")
    before_b = all_ledger_rows(rapport, other)
    key_a = links.link_key(rapport.keyring, rapport.runtime(workspace.workspace_id))
    key_b = links.link_key(rapport.keyring, rapport.runtime(other.workspace_id))
    assert key_a != key_b

    # B's workspace and person in the payload, signed with A's key: not B's signature.
    forged = links.make_token(key_a, other.workspace_id, ProfileId(pid_b), NOW, ("marketing_email",))
    assert_error(client.post(f"/unsubscribe/{forged}?purpose=marketing_email", data=ONE_CLICK, headers=JSON),
                 403, "invalid_link_signature")
    # A's own valid link naming B's person: no such person in A.
    stray = links.make_token(key_a, workspace.workspace_id, ProfileId(pid_b), NOW)
    assert_error(client.get(f"/preferences/{stray}", headers=JSON), 410, "link_profile_gone")
    # A workspace id that does not exist at all is refused like any bad signature.
    ghost = links.make_token(key_a, WorkspaceId("ws_ghost"), ProfileId(pid_a), NOW)
    assert_error(client.get(f"/preferences/{ghost}", headers=JSON), 403, "invalid_link_signature")
    # A's real link works, in A only.
    assert client.post(link(rapport, workspace, pid_a, "marketing_email"), data=ONE_CLICK).status_code == 200
    assert all_ledger_rows(rapport, other) == before_b
    assert [e.source for e in ledger(rapport, workspace, pid_a)] == ["unsubscribe_link"]


def test_a_link_reveals_no_personal_data(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace, email="ada@example.com", name="Ada Lovelace")
    for path in (link(rapport, workspace, pid), link(rapport, workspace, pid, "marketing_email")):
        payload = token_of(path).split(".")[0]
        decoded = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert decoded[:4] == [1, workspace.workspace_id, pid, NOW]
        page = client.get(path, headers=BROWSER).text
        for secret in ("ada@example.com", "Ada", "Lovelace"):
            assert secret not in path and secret not in str(decoded) and secret not in page


# --- tokens (pure) --------------------------------------------------------------------------------

KEY = bytes(range(32))
WS = WorkspaceId("ws_0123456789")
PID = ProfileId("prf_abcdefghij")


def _keys(ws: WorkspaceId) -> bytes | None:
    return KEY if ws == WS else None


@given(at=st.integers(0, 2**41), scope=st.one_of(st.just("*"), st.lists(
    st.sampled_from(["analytics", "marketing_email", "marketing_sms", "newsletter"]), min_size=1)))
def test_tokens_round_trip(at: int, scope: str | list[str]) -> None:
    token = links.make_token(KEY, WS, PID, at, scope)
    claims = links.verify(token, at, links.MAX_AGE, _keys)
    expected = "*" if scope == "*" else tuple(sorted(set(scope)))
    assert claims == links.LinkClaims(WS, PID, at, expected)


@given(at=st.integers(0, 10**6), edit=st.data())
def test_every_single_character_change_is_refused(at: int, edit: st.DataObject) -> None:
    token = links.make_token(KEY, WS, PID, at, ("marketing_email",))
    index = edit.draw(st.integers(0, len(token) - 1))
    replacement = edit.draw(st.sampled_from("ABCabc019-_.=+/ ").filter(lambda ch: ch != token[index]))
    tampered = token[:index] + replacement + token[index + 1:]
    with pytest.raises(links.LinkError) as refused:
        links.verify(tampered, at, links.MAX_AGE, _keys)
    assert isinstance(refused.value, links.MalformedLink | links.BadSignature)


def test_no_other_spelling_of_a_token_is_accepted() -> None:
    """Exhaustive over one token: base64 leaves unused bits in a part's last character, which must
    not give a second accepted spelling of the same token."""
    token = links.make_token(KEY, WS, PID, NOW, ("marketing_email",))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="
    accepted = [i for i in range(len(token)) for ch in alphabet if ch != token[i]
                if _accepted(token[:i] + ch + token[i + 1:])]
    assert accepted == []
    assert _accepted(token)


def _accepted(token: str) -> bool:
    try:
        links.verify(token, NOW, links.MAX_AGE, _keys)
    except links.LinkError:
        return False
    return True


def test_verify_checks_the_signature_before_the_age() -> None:
    token = links.make_token(KEY, WS, PID, 0)
    with pytest.raises(links.ExpiredLink):
        links.verify(token, links.MAX_AGE + 1, links.MAX_AGE, _keys)
    with pytest.raises(links.BadSignature):
        links.verify(token, links.MAX_AGE + 1, links.MAX_AGE, lambda _ws: bytes(32))
    assert links.verify(token, links.MAX_AGE, links.MAX_AGE, _keys).issued_at == 0


def test_link_keys_are_derived_per_workspace_and_never_equal_the_input() -> None:
    derived = links.derive_link_key(KEY)
    assert len(derived) == 32 and derived != KEY
    assert derived == links.derive_link_key(KEY) != links.derive_link_key(bytes(32))
    with pytest.raises(ValueError, match="at least 32 bytes"):
        links.derive_link_key(b"short")
