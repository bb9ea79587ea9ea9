"""Erasure reaches every copy (DESIGN 3.6) of what journeys and channels keep about a person, on SQLite and
PostgreSQL: a person merged from two profiles goes through the timing matrix journey (in-app, email, push, SMS
and an offline task), opens and clicks, bounces and complains, has events still queued for the journeys and a
test send rendered as them to their own address; then ``DELETE /api/v1/profiles/{id}``. Every table of the
migrations is read row by row for their ids and values; a bystander keeps everything; the complaint still
stops mail to the address when the person comes back."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from api.support import ApiClient, basic, lookup, proven, track
from channels.support import HttpServer, SmtpServer
from journeys.support import EVERY_PURPOSE, MATRIX_OFFSETS, PROVIDER_TOKENS, TimingMatrixWorld, demo_resources

from rapport.channels import tracking
from rapport.channels.base import Message
from rapport.channels.feedback import address_hash
from rapport.channels.inapp import InAppChannel
from rapport.channels.offline import OfflineChannel
from rapport.core import NewWorkspace, Rapport
from rapport.errors import Terminal
from rapport.storage.sql import erasure as erasure_sql
from rapport.types import DAY, MINUTE

MIGRATIONS = sorted((Path(erasure_sql.__file__).parent.parent / "sqlite" / "migrations").glob("*.sql"))
USER, ANON = "zoraida-q-7731", "anon-zoraida-7731"
EMAIL, PHONE, NAME, TOKEN = "zoraida.q@example.com", "+14155550123", "Zoraida", "device-token-zq-7731"
CLEAR_VALUES = (USER, ANON, EMAIL, PHONE, NAME, TOKEN, "Quennell", "Velvet armchair", "c-zq-42")
"""What identifies the person in clear: identifiers, traits, and their entry event's properties."""


def all_tables() -> list[str]:
    """Every table the migrations leave: created, less those dropped, renamed as renamed (a table rebuilt under a
    new layout is created under a temporary name, the old one dropped and the new one renamed)."""
    names: dict[str, None] = {}
    statement = re.compile(r"CREATE TABLE (\w+)|DROP TABLE (\w+)|ALTER TABLE (\w+) RENAME TO (\w+)")
    for path in MIGRATIONS:
        for created, dropped, renamed, to in statement.findall(path.read_text(encoding="utf-8")):
            if created:
                names[created] = None
            elif dropped:
                names.pop(dropped)
            else:
                names.pop(renamed)
                names[to] = None
    return list(names)


def rows_of(rapport: Rapport, ws: str, table: str) -> list[tuple[Any, ...]]:
    column = "id" if table == "workspaces" else "workspace_id"
    return rapport.db.read(lambda c: c.all(f"SELECT * FROM {table} WHERE {column} = ?", (ws,)))


def text_of(cell: Any) -> str:
    if isinstance(cell, bytes | bytearray | memoryview):
        return bytes(cell).decode("latin-1")
    return str(cell)


class Erasable(TimingMatrixWorld):
    """A workspace running the demo's timing matrix, with what the person's erasure must reach."""

    def __init__(self, rapport: Rapport, client: ApiClient, ws: NewWorkspace, smtp: SmtpServer, push: HttpServer,
                 sms: HttpServer) -> None:
        super().__init__(rapport, client, ws, smtp, push, sms, PROVIDER_TOKENS)

    def merged_person(self) -> tuple[str, str]:
        """The person: an anonymous visitor who browsed, then signed in (two profiles, merged)."""
        response = track(self.client, self.ws, "/v1/track", {"anonymousId": ANON, "event": "Page Viewed",
                                                             "properties": {"email": EMAIL}})
        assert response.status_code == 200, response.text
        anon = lookup(self.client, self.ws, anonymous_id=ANON).json()
        pid = self.person(USER, EVERY_PURPOSE, email=EMAIL, phone=PHONE, first_name=NAME, last_name="Quennell",
                          push_token=TOKEN)
        assert anon["id"] != pid
        response = track(self.client, self.ws, "/v1/alias", {"userId": USER, "previousId": ANON})
        assert response.status_code == 200, response.text
        root = self.call("GET", f"/api/v1/profiles/{anon['id']}").json()["id"]
        assert root in (pid, anon["id"])
        return root, anon["id"] if root == pid else pid

    def entry(self, user_id: str, product: str = "Velvet armchair", cart: str = "c-zq-42") -> None:
        """The matrix's entry event, naming the product and the cart."""
        self.view(user_id, product, cart_id=cart)

    def through_the_matrix(self) -> None:
        start = self.clock.now_ms()
        for offset in sorted(MATRIX_OFFSETS.values()):
            self.clock.set(start + offset)
            self.work()

    def by_channel(self, profile_id: str) -> dict[str, tuple[Any, ...]]:
        """The person's send-log rows by channel (the latest of a channel)."""
        return {str(r[7]): tuple(r) for r in self.sends(profile_id)}

    def ses(self, notification: dict[str, Any]) -> None:
        payload = {"Type": "Notification", "MessageId": "n-1", "Message": json.dumps(notification),
                   "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses", "Timestamp": "2026-03-02T10:00:00.000Z"}
        response = self.client.post("/v1/feedback/ses", content=json.dumps(payload).encode(),
                                    headers={**basic(self.ws.admin_token), "Content-Type": "text/plain"})
        assert response.status_code == 200, response.text


@pytest.fixture
def world(rapport: Rapport, client: ApiClient, workspace: NewWorkspace, smtp: SmtpServer, push: HttpServer,
          sms: HttpServer) -> Erasable:
    world = Erasable(rapport, client, workspace, smtp, push, sms)
    world.apply(demo_resources(smtp, push, sms))
    return world


def test_every_table_of_the_migrations_is_accounted_for() -> None:
    """A new table must be decided on: erased with the person, kept without them, or holding nobody."""
    erased = {table for table, _ in erasure_sql.DELETED} | set(erasure_sql.BY_ENROLLMENT) | {
        "journey_inbox", "journey_enrollments", "journey_sends", "email_engagement", "suppressions", "audit_log",
        "quarantine"}
    holding_nobody = {"workspaces", "credentials", "series", "resources", "imports", "segment_refreshes",
                      "journey_schedule_runs", "journey_migrations", "model_versions",
                      "rec_products", "rec_pairs", "rec_popular", "rec_builds"}
    assert set(all_tables()) == erased | holding_nobody


def test_erasure_leaves_nothing_that_names_the_person_and_keeps_the_complaint(world: Erasable) -> None:
    rapport, ws = world.rapport, world.id
    pid, merged = world.merged_person()
    other = world.person("bystander-1", EVERY_PURPOSE, email="by@example.com", first_name="Bea")
    world.entry(USER)
    world.entry("bystander-1", "Linen shirt", "c-by-1")
    world.through_the_matrix()
    sends = world.by_channel(pid)
    assert {s[11] for s in sends.values()} == {"sent"} and set(sends) == set(MATRIX_OFFSETS)

    # Engagement with the email, and provider feedback about the address.
    key, provider_id = str(sends["email"][1]), str(sends["email"][18])
    tracking_key = tracking.tracking_key(rapport.keyring, rapport.runtime(ws))
    assert world.client.get(f"/t/o/{tracking.open_token(tracking_key, ws, key)}").status_code == 200
    click = tracking.click_token(tracking_key, ws, key, f"https://shop.example/cart?email={EMAIL}")
    assert world.client.get(f"/t/c/{click}", follow_redirects=False).status_code in (302, 303, 307)
    mail = {"timestamp": "2026-03-02T10:00:00.000Z", "source": "hello@shop.example", "messageId": "ses-zq-1",
            "destination": [EMAIL], "commonHeaders": {"messageId": provider_id}}
    world.ses({"notificationType": "Bounce", "mail": mail, "bounce": {
        "bounceType": "Permanent", "bounceSubType": "General", "timestamp": "2026-03-02T10:00:01.000Z",
        "bouncedRecipients": [{"emailAddress": EMAIL, "diagnosticCode": f"550 <{EMAIL}> unknown"}]}})
    world.ses({"notificationType": "Complaint", "mail": {**mail, "messageId": "x", "commonHeaders": {}},
               "complaint": {"complainedRecipients": [{"emailAddress": EMAIL}], "complaintFeedbackType": "abuse",
                             "timestamp": "2026-03-02T10:00:02.000Z"}})
    # A test send rendered as the person, to their own address; and events still queued for the journeys.
    response = world.call("POST", "/api/v1/journeys/timing_matrix/test-sends",
                          json={"to": [EMAIL, PHONE], "as_profile": pid})
    assert response.status_code == 200, response.text
    world.entry(USER)
    before = {t: len(rows_of(rapport, ws, t)) for t in all_tables()}
    bystander = (world.by_channel(other), world.delivered(other), world.call("GET", f"/api/v1/profiles/{other}").json())
    own_ids = rapport.db.read(lambda c: [str(r[0]) for r in c.all(
        "SELECT id FROM inbox_messages WHERE workspace_id = ? AND profile_id IN (?, ?) UNION ALL"
        " SELECT id FROM offline_tasks WHERE workspace_id = ? AND profile_id IN (?, ?)", (ws, pid, merged, ws, pid,
                                                                                         merged))])
    enrollments = rapport.db.read(lambda c: [str(r[0]) for r in c.all(
        "SELECT id FROM journey_enrollments WHERE workspace_id = ? AND profile_id IN (?, ?)", (ws, pid, merged))])
    assert len(own_ids) == 2 and enrollments
    queued = rapport.db.read(lambda c: c.all("SELECT count(*) FROM journey_inbox WHERE workspace_id = ?", (ws,)))
    assert queued[0][0] >= 1
    for table in ("journey_enrollments", "journey_entries", "inbox_messages", "offline_tasks", "email_engagement",
                  "suppressions", "events", "consent_ledger", "identifiers", "merges"):
        assert before[table] > 0, table
    # (Their name is in no row in clear: the rows that quote it are sealed under their key.)
    for needle in (pid, EMAIL):
        assert any(needle in text_of(cell) for table in all_tables() for row in rows_of(rapport, ws, table)
                   for cell in row), f"the setup stores {needle!r} somewhere"

    response = world.call("DELETE", f"/api/v1/profiles/{merged}")
    assert response.status_code == 200, response.text
    erased = response.json()["erased"]
    assert erased["profile_id"] == pid and set(erased["profiles"]) == {pid, merged}

    # Row by row, every table: no id of theirs, no value of theirs in clear.
    needles = (pid, merged, *CLEAR_VALUES, *own_ids)
    kept_id = []
    for table in all_tables():
        for row in rows_of(rapport, ws, table):
            for cell in row:
                found = [n for n in needles if n in text_of(cell)]
                if found and table == "audit_log" and row[3] == "profile.erase" and row[4] == pid:
                    kept_id.append(row)  # the erasure's own record names the id the request named
                    continue
                assert not found, f"{table} still holds {found}: {row}"
    assert len(kept_id) == 1
    for table in all_tables():
        for row in rows_of(rapport, ws, table):
            if any(e in text_of(cell) for cell in row for e in enrollments):
                # Opaque keys of the send log's kept rows, leading to nothing about anyone.
                assert table in ("journey_sends", "email_engagement"), f"{table} names an enrollment: {row}"
    # The suppressions keep the address's keyed hash only: no other table holds it, and no table its plain
    # SHA-256, which anyone could compute from a list of candidate addresses.
    hashed = address_hash(rapport.keyring, ws, rapport.runtime(ws).wrapped_key, EMAIL)
    plain = hashlib.sha256(EMAIL.encode()).hexdigest()
    for table in all_tables():
        for row in rows_of(rapport, ws, table):
            if any(hashed in text_of(cell) for cell in row):
                assert table == "suppressions", f"{table} still holds the address hash: {row}"
            assert not any(plain in text_of(cell) for cell in row), f"{table} holds the address's SHA-256: {row}"

    # What stays, naming nobody: the send log's counts and the suppressions of the address.
    kept = rapport.db.read(lambda c: c.all(
        "SELECT channel, status, profile_id, detail, provider_id FROM journey_sends WHERE workspace_id = ?"
        " AND profile_id = ? ORDER BY channel", (ws, erasure_sql.ERASED)))
    assert [(r[0], r[1]) for r in kept] == sorted((c, "sent") for c in MATRIX_OFFSETS)
    assert {(r[2], r[3], r[4]) for r in kept} == {(erasure_sql.ERASED, None, None)}
    suppressions = rapport.db.read(lambda c: c.all(
        "SELECT profile_id, reason, detail FROM suppressions WHERE workspace_id = ? AND address_hash = ?"
        " ORDER BY reason", (ws, hashed)))
    assert suppressions == [(None, "complaint", ""), (None, "hard_bounce", "")]
    engagement = rapport.db.read(lambda c: c.all(
        "SELECT kind, profile_id, url FROM email_engagement WHERE workspace_id = ? ORDER BY kind", (ws,)))
    assert engagement == [("click", erasure_sql.ERASED, None), ("open", erasure_sql.ERASED, None)]
    for table in ("journey_enrollments", "journey_entries", "journey_inbox", "inbox_messages",
                  "offline_tasks", "identifiers", "merges", "consent_ledger"):
        assert len(rows_of(rapport, ws, table)) < before[table], table

    # The bystander keeps everything.
    assert bystander == (world.by_channel(other), world.delivered(other),
                         world.call("GET", f"/api/v1/profiles/{other}").json())
    assert (bystander[1]["inbox"], bystander[1]["store_follow_up"]) == (1, 1)
    assert bystander[2]["traits"]["first_name"] == "Bea"

    # Gone is gone: the id is unknown now, and a second erasure is a 404.
    assert world.call("GET", f"/api/v1/profiles/{pid}").status_code == 404
    again = world.call("DELETE", f"/api/v1/profiles/{pid}")
    assert again.status_code == 404 and again.json()["code"] == "profile_not_found"

    # The journeys go on without them, and the complaint still stops mail when the address comes back.
    world.clock.advance(8 * DAY)
    world.work()
    mails = len(world.smtp.handler.received)
    back = world.person("zoraida-again", EVERY_PURPOSE, email=EMAIL.upper(), first_name="Z")
    assert back not in (pid, merged)
    world.entry("zoraida-again", "Oak stool", "c-again")
    start = world.clock.now_ms()
    world.clock.set(start + 16 * MINUTE)
    world.work()
    status, reason = world.by_channel(back)["email"][11:13]
    assert (status, reason) == ("refused", "suppressed_complaint")
    assert len(world.smtp.handler.received) == mails
    assert world.delivered(back)["inbox"] == 1, "other channels still reach them"


def test_stored_messages_are_sealed_under_the_profile_key_and_shredded_by_erasure(
        world: Erasable, rapport: Rapport) -> None:
    ws = world.id
    pid = world.person(USER, ("personalization",), email=EMAIL, first_name=NAME)
    inbox = InAppChannel(rapport.db, ws, "inbox", world.clock, keyring=rapport.keyring)
    tasks = OfflineChannel(rapport.db, ws, "store_follow_up", world.clock, keyring=rapport.keyring)
    asyncio.run(inbox.send(Message("k1", pid, subject=f"Hi {NAME}", text="Your armchair",
                                   data={"phone": PHONE})))
    asyncio.run(tasks.send(Message("k2", pid, subject=f"Call {NAME}", text=f"at {PHONE}")))
    for table in ("inbox_messages", "offline_tasks"):
        [row] = rows_of(rapport, ws, table)
        assert not any(v in text_of(cell) for cell in row for v in (NAME, PHONE)), row

    read = world.client.get("/v1/inbox", params=proven(world.client, world.ws, {"user_id": USER}),
                            headers=basic(world.ws.write_key))
    assert read.status_code == 200, read.text
    [message] = read.json()["messages"]
    assert (message["title"], message["body"], message["data"]) == (f"Hi {NAME}", "Your armchair", {"phone": PHONE})
    listed = world.call("GET", "/api/v1/channels/store_follow_up/tasks")
    assert [(t["title"], t["body"]) for t in listed.json()["tasks"]] == [(f"Call {NAME}", f"at {PHONE}")]
    csv = world.call("GET", "/api/v1/channels/store_follow_up/tasks.csv")
    assert f"Call {NAME}" in csv.text

    # A repeated key stores nothing new, sealed or not.
    again = asyncio.run(inbox.send(Message("k1", pid, subject="other", text="other")))
    assert len(rows_of(rapport, ws, "inbox_messages")) == 1 and again.provider_id == message["id"]

    assert world.call("DELETE", f"/api/v1/profiles/{pid}").status_code == 200
    assert rows_of(rapport, ws, "inbox_messages") == [] and rows_of(rapport, ws, "offline_tasks") == []
    assert rapport.db.read(lambda c: c.all("SELECT id FROM profiles WHERE workspace_id = ? AND id = ?",
                                           (ws, pid))) == [], "the data key is gone with the profile"


def test_a_message_whose_data_is_a_sealed_marker_is_refused(world: Erasable, rapport: Rapport) -> None:
    pid = world.person(USER, ())
    inbox = InAppChannel(rapport.db, world.id, "inbox", world.clock, keyring=rapport.keyring)
    with pytest.raises(Terminal) as raised:
        asyncio.run(inbox.send(Message("k", pid, text="x", data={"$pii": "AAAA"})))
    assert raised.value.code == "invalid_message"


def test_erasure_needs_an_admin_token_allowed_to_write_profiles(world: Erasable) -> None:
    pid = world.person(USER, ())
    marketer = world.rapport.create_token(world.id, "marketer", "m", "test")
    refused = world.call("DELETE", f"/api/v1/profiles/{pid}", token=marketer)
    assert refused.status_code == 403
    missing = world.call("DELETE", "/api/v1/profiles/prf_nobody")
    assert missing.status_code == 404 and missing.json()["code"] == "profile_not_found"
    assert world.call("GET", f"/api/v1/profiles/{pid}").status_code == 200



QUARANTINING_PLAN = """
kind: TrackingPlan
name: shop
mode: quarantine
events:
  Order Completed:
    schema:
      type: object
      required: [revenue]
      properties:
        revenue: {type: number}
"""


def test_their_quarantined_messages_go_and_other_peoples_records_stay_whole(world: Erasable,
                                                                            rapport: Rapport) -> None:
    ws = world.id
    pid = world.person(USER, ("analytics",), email=EMAIL)
    other = world.person("u1", ("analytics",), email="u1@example.com")
    response = world.call("POST", "/api/v1/apply", content=QUARANTINING_PLAN.encode(),
                     headers={"Content-Type": "application/yaml"})
    assert response.status_code == 200, response.text
    for user, traits in ((USER, {"email": EMAIL}), (None, {"email": EMAIL}), ("u1", {})):
        body: dict[str, Any] = {"event": "Order Completed", "properties": {"revenue": "12.50"},
                                "context": {"traits": traits}}
        body.update({"userId": user} if user else {"anonymousId": "someone"})
        assert track(world.client, world.ws, "/v1/track", body).status_code == 200
    assert len(rows_of(rapport, ws, "quarantine")) == 3
    audit_before = [r for r in rows_of(rapport, ws, "audit_log") if pid not in str(r)]
    assert any(r[4] == other for r in audit_before), "the bystander's consent is audited"

    assert world.call("DELETE", f"/api/v1/profiles/{pid}").status_code == 200
    kept = world.call("GET", "/api/v1/quarantine").json()["messages"]
    assert [m["payload"].get("userId") for m in kept] == ["u1"], "theirs go, by user id and by email"
    assert [r for r in rows_of(rapport, ws, "audit_log") if r[3] != "profile.erase"
            and r[4] != erasure_sql.ERASED] == audit_before
    erased = [r for r in rows_of(rapport, ws, "audit_log") if r[4] == erasure_sql.ERASED]
    assert erased and all(r[3].startswith("consent.") for r in erased), "their consent records name nobody"
