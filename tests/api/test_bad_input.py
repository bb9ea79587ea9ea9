"""Bad input never gets stored: each case gets its precise status and code, and the server stays healthy."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from api.support import ApiClient, admin, assert_error, basic, bearer, event_rows, lookup, nothing_stored, track
from rapport.core import NewWorkspace, Rapport

GOOD = {"userId": "u1", "event": "Order Completed", "properties": {"revenue": 10}}


def j(value: Any) -> bytes:
    return orjson.dumps(value)


def with_(**changes: Any) -> bytes:
    """The good track message with fields replaced (a value of ``...`` removes the field)."""
    body = {**GOOD, **changes}
    return j({k: v for k, v in body.items() if v is not ...})


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"next": value}
    return value


def many_events(total_bytes: int) -> bytes:
    item = {"type": "track", "userId": "u1", "event": "Page Viewed", "properties": {"pad": "x" * 1000}}
    count = total_bytes // len(j(item)) + 1
    return j({"batch": [item] * count})


Headers = Callable[[NewWorkspace], dict[str, str]]


def write_key(ws: NewWorkspace) -> dict[str, str]:
    return basic(ws.write_key)


@dataclass(frozen=True)
class Case:
    id: str
    body: bytes
    status: int
    code: str
    path: str = "/v1/track"
    auth: Headers = write_key
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"


CASES = [
    # --- the body as a whole --------------------------------------------------------------------
    Case("malformed_json", b'{"userId": "u1", "event": "Order Completed"', 400, "invalid_json"),
    Case("empty_body", b"", 400, "invalid_json"),
    Case("trailing_garbage", j(GOOD) + b" extra", 400, "invalid_json"),
    Case("body_is_a_list", j([GOOD]), 400, "invalid_message"),
    Case("body_is_a_string", j("track me"), 400, "invalid_message"),
    Case("invalid_utf8", b'{"userId": "u\xff\xfe1", "event": "Order Completed"}', 400, "invalid_json"),
    Case("nan_literal", b'{"userId": "u1", "event": "A", "properties": {"x": NaN}}', 400, "invalid_json"),
    Case("infinity_literal", b'{"userId": "u1", "event": "A", "properties": {"x": Infinity}}', 400,
         "invalid_json"),
    Case("minus_infinity_literal", b'{"userId": "u1", "event": "A", "properties": {"x": -Infinity}}', 400,
         "invalid_json"),
    Case("nesting_deeper_than_32", with_(properties=nested(40)), 400, "too_deep"),
    Case("client_sent_encrypted_marker", with_(properties={"note": {"$pii": "AAAA"}}), 400, "reserved_key"),
    Case("reserved_key_in_traits", j({"userId": "u1", "traits": {"email": {"$pii": "QUJD", "x": 1}}}), 400,
         "reserved_key", "/v1/identify"),
    Case("reserved_key_in_batch_context", j({"batch": [GOOD], "context": {"traits": {"$pii": "QUJD"}}}), 400,
         "reserved_key", "/v1/batch"),
    # --- wrong types, field by field ------------------------------------------------------------
    Case("userId_object", with_(userId={"id": "u1"}), 400, "invalid_field"),
    Case("userId_list", with_(userId=["u1"]), 400, "invalid_field"),
    Case("userId_boolean", with_(userId=True), 400, "invalid_field"),
    Case("anonymousId_object", with_(userId=..., anonymousId={"a": 1}), 400, "invalid_field"),
    Case("properties_list", with_(properties=[1, 2]), 400, "invalid_field"),
    Case("properties_string", with_(properties="revenue=10"), 400, "invalid_field"),
    Case("context_string", with_(context="web"), 400, "invalid_field"),
    Case("integrations_number", with_(integrations=1), 400, "invalid_field"),
    Case("traits_list", j({"userId": "u1", "traits": ["gold"]}), 400, "invalid_field", "/v1/identify"),
    Case("timestamp_number", with_(timestamp=1767225600000), 400, "invalid_timestamp"),
    Case("timestamp_not_a_date", with_(timestamp="yesterday"), 400, "invalid_timestamp"),
    Case("originalTimestamp_boolean", with_(originalTimestamp=True), 400, "invalid_timestamp"),
    Case("sentAt_object", with_(sentAt={"at": "2026-01-01"}), 400, "invalid_timestamp"),
    Case("event_missing", with_(event=...), 400, "missing_event"),
    Case("event_empty", with_(event=""), 400, "missing_event"),
    Case("event_blank", with_(event="   "), 400, "missing_event"),
    Case("event_number", with_(event=42), 400, "missing_event"),
    Case("event_name_too_long", with_(event="E" * 201), 400, "invalid_field"),
    Case("page_name_number", j({"userId": "u1", "name": 7}), 400, "invalid_field", "/v1/page"),
    Case("type_of_another_endpoint", with_(type="identify"), 400, "invalid_type"),
    Case("unknown_type_in_batch_only_item", j({"batch": [{**GOOD, "type": "purchase"}]}), 400, "invalid_batch",
         "/v1/batch"),
    # --- identifiers --------------------------------------------------------------------------------
    Case("no_user_or_anonymous_id", with_(userId=...), 400, "missing_id"),
    Case("blank_user_id", with_(userId="   "), 400, "missing_id"),
    Case("userId_too_long", with_(userId="u" * 257), 400, "invalid_field"),
    Case("messageId_too_long", with_(messageId="m" * 257), 400, "invalid_field"),
    Case("messageId_number", with_(messageId=12345), 400, "invalid_field"),
    Case("messageId_blank", with_(messageId="  "), 400, "invalid_field"),
    Case("alias_without_previousId", j({"userId": "u1"}), 400, "missing_id", "/v1/alias"),
    Case("alias_without_userId", j({"previousId": "anon-1"}), 400, "missing_id", "/v1/alias"),
    Case("group_without_groupId", j({"userId": "u1", "traits": {"name": "Acme"}}), 400, "missing_id",
         "/v1/group"),
    Case("groupId_object", j({"userId": "u1", "groupId": {"id": 1}}), 400, "invalid_field", "/v1/group"),
    Case("userId_with_nul", with_(userId="u\u00001"), 400, "invalid_field"),
    Case("anonymousId_with_nul", with_(userId=..., anonymousId="a\u00001"), 400, "invalid_field"),
    Case("event_with_nul", with_(event="Order\u0000Completed"), 400, "invalid_field"),
    Case("messageId_with_nul", with_(messageId="m\u00001"), 400, "invalid_field"),
    Case("trait_name_with_nul", j({"userId": "u1", "traits": {"pl\u0000an": "pro"}}), 400, "invalid_field",
         "/v1/identify"),
    Case("groupId_with_nul", j({"userId": "u1", "groupId": "g\u00001"}), 400, "invalid_field", "/v1/group"),
    Case("page_name_with_nul", j({"userId": "u1", "name": "Ho\u0000me"}), 400, "invalid_field", "/v1/page"),
    Case("previousId_with_nul", j({"userId": "u1", "previousId": "a\u00001"}), 400, "invalid_field", "/v1/alias"),
    Case("email_trait_too_long", j({"userId": "u1", "traits": {"email": "a" * 300 + "@example.com"}}), 400,
         "invalid_identifier", "/v1/identify"),
    Case("consent_preference_not_boolean",
         with_(context={"consent": {"categoryPreferences": {"Analytics": "yes"}}}), 400, "invalid_consent_context"),
    # --- sizes and encodings ------------------------------------------------------------------------
    Case("event_over_32kb", with_(properties={"blob": "x" * 33_000}), 413, "body_too_large"),
    Case("batch_over_500kb", many_events(520_000), 413, "body_too_large", "/v1/batch"),
    Case("gzip_bomb", gzip.compress(b"0" * 10_000_000), 413, "body_too_large",
         headers={"Content-Encoding": "gzip"}),
    Case("gzip_bomb_on_batch", gzip.compress(b" " * 10_000_000), 413, "body_too_large", "/v1/batch",
         headers={"Content-Encoding": "gzip"}),
    Case("truncated_gzip", gzip.compress(j(GOOD))[:-10], 400, "invalid_gzip", headers={"Content-Encoding": "gzip"}),
    Case("gzip_header_plain_body", j(GOOD), 400, "invalid_gzip", headers={"Content-Encoding": "gzip"}),
    Case("unknown_content_encoding", j(GOOD), 400, "unsupported_encoding", headers={"Content-Encoding": "br"}),
    # --- credentials --------------------------------------------------------------------------------
    Case("no_auth", j(GOOD), 401, "missing_credentials", auth=lambda ws: {}),
    Case("wrong_write_key", j(GOOD), 401, "invalid_credentials", auth=lambda ws: basic("wk_" + "A" * 43)),
    Case("garbage_credentials", j(GOOD), 401, "invalid_credentials", auth=lambda ws: basic("letmein")),
    Case("malformed_basic_header", j(GOOD), 401, "invalid_credentials",
         auth=lambda ws: {"Authorization": "Basic %%%not-base64%%%"}),
    Case("bearer_instead_of_basic", j(GOOD), 401, "missing_credentials", auth=lambda ws: bearer(ws.write_key)),
    Case("admin_token_as_write_key", j(GOOD), 403, "wrong_credential_kind", auth=lambda ws: basic(ws.admin_token)),
    Case("wrong_writeKey_in_body", with_(writeKey="wk_" + "B" * 43), 401, "invalid_credentials",
         auth=lambda ws: {}),
    Case("writeKey_in_body_not_a_string", with_(writeKey=12345), 401, "missing_credentials", auth=lambda ws: {}),
    Case("write_key_as_admin_token", j({"identifiers": {"user_id": "u1"}, "purpose": "analytics",
                                        "state": "granted"}), 403, "wrong_credential_kind", "/api/v1/consent",
         auth=lambda ws: bearer(ws.write_key)),
    # --- batch envelopes ----------------------------------------------------------------------------
    Case("batch_not_a_list", j({"batch": {"0": GOOD}}), 400, "invalid_body", "/v1/batch"),
    Case("batch_missing", j({"messages": [GOOD]}), 400, "invalid_body", "/v1/batch"),
    Case("batch_body_is_a_list", j([GOOD]), 400, "invalid_body", "/v1/batch"),
    Case("batch_sentAt_not_a_date", j({"batch": [{**GOOD, "type": "track"}], "sentAt": "soon"}), 400,
         "invalid_timestamp", "/v1/batch"),
    Case("batch_context_string", j({"batch": [{**GOOD, "type": "track"}], "context": "web"}), 400, "invalid_body",
         "/v1/batch"),
    Case("batch_every_item_bad", j({"batch": [{"type": "track", "userId": "u1"}, 5, {"type": "alias"}]}), 400,
         "invalid_batch", "/v1/batch"),
]


def test_the_suite_is_broad() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_and_not_stored(
    case: Case, client: ApiClient, rapport: Rapport, workspace: NewWorkspace
) -> None:
    response = client.request(case.method, case.path, content=case.body,
                              headers={**case.auth(workspace), **case.headers})
    assert_error(response, case.status, case.code)
    assert nothing_stored(rapport, workspace)
    assert lookup(client, workspace, user_id="u1").status_code == 404
    assert client.get("/healthz").status_code == 200
    assert track(client, workspace, "/v1/track", GOOD).json() == {"success": True}, "the server still ingests"


def test_all_bad_batch_lists_every_item(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    body = {"batch": [{"type": "track", "userId": "u1"}, 5, {"type": "alias", "userId": "u1"}]}
    details = assert_error(track(client, workspace, "/v1/batch", body), 400, "invalid_batch")["details"]
    assert [(d["index"], d["code"]) for d in details] == [(0, "missing_event"), (1, "invalid_message"),
                                                          (2, "missing_id")]
    assert all(d["message"] for d in details)
    assert nothing_stored(rapport, workspace)


def test_mixed_batch_stores_the_good_and_reports_each_bad(
    client: ApiClient, rapport: Rapport, workspace: NewWorkspace
) -> None:
    def good(n: int) -> dict[str, Any]:
        return {"type": "track", "userId": f"good-{n}", "event": "Viewed", "messageId": f"good-{n}"}

    batch: list[Any] = [
        good(0),
        {"type": "track", "userId": "bad-1", "messageId": "bad-1"},
        good(2),
        {"type": "track", "userId": {"id": 3}, "event": "Viewed", "messageId": "bad-3"},
        {"type": "track", "userId": "bad-4", "event": "Viewed", "messageId": "bad-4",
         "properties": {"blob": "x" * 33_000}},
        "not a message",
        good(6),
        {"type": "track", "userId": "bad\u00007", "event": "Viewed", "messageId": "bad-7"},
        {"type": "identify", "userId": "bad-8", "messageId": "bad-8", "traits": {"email": "a" * 300 + "@x.io"}},
        {"type": "track", "userId": "bad-9", "event": "Viewed", "messageId": "bad-9",
         "context": {"consent": {"categoryPreferences": {"Analytics": "yes"}}}},
        {"type": "teleport", "userId": "bad-10", "messageId": "bad-10"},
        good(11),
    ]
    response = track(client, workspace, "/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    reported = {e["index"]: e for e in body["errors"]}
    assert sorted(reported) == [1, 3, 4, 5, 7, 8, 9, 10]
    assert {i: e["code"] for i, e in reported.items()} == {
        1: "missing_event", 3: "invalid_field", 4: "event_too_large", 5: "invalid_message",
        7: "invalid_field", 8: "invalid_identifier", 9: "invalid_consent_context", 10: "invalid_type",
    }
    assert all(isinstance(e["message"], str) and e["message"] for e in body["errors"])
    assert [row[0] for row in event_rows(rapport, workspace)] == ["good-0", "good-2", "good-6", "good-11"]
    for n in (1, 4, 7, 8, 9, 10):
        assert lookup(client, workspace, user_id=f"bad-{n}").status_code == 404


def test_admin_write_key_on_read_route(client: ApiClient, workspace: NewWorkspace) -> None:
    response = admin(client, workspace, "GET", "/api/v1/profiles/lookup", token=workspace.write_key,
                     params={"user_id": "u1"})
    assert_error(response, 403, "wrong_credential_kind")
