"""Personal data never reaches the database files in clear text (byte scan of the SQLite files)."""

from __future__ import annotations

from pathlib import Path

from rapport.api.app import run_backfills
from rapport.clock import FrozenClock
from rapport.core import Rapport
from rapport.ingestion.parse import parse_message
from rapport.profiles.service import ProfileReader
from rapport.resources import service as resources
from rapport.settings import Settings

EMAIL, PHONE, NAME, IP = "Zelda.Quorn@example.org", "+14155550123", "Zeldaquornia", "203.0.113.77"
GIFT = "gift.receiver@example.net"
PERSONAL_TRAITS = """
kind: ComputedTrait
name: last_gift_to
event: Gift Sent
property: to.email
aggregate: last
---
kind: ComputedTrait
name: gift_recipients
event: Gift Sent
property: to.email
aggregate: distinct
"""


def test_known_email_phone_name_absent_from_raw_files(tmp_path: Path) -> None:
    clock = FrozenClock(1_780_000_000_000)
    rapport = Rapport(Settings(database_url=f"sqlite:///{tmp_path / 'r.db'}", data_dir=tmp_path), clock=clock)
    ws = rapport.create_workspace("shop").workspace_id
    rapport.db.write(lambda c: resources.apply(c, ws, PERSONAL_TRAITS, "test", clock.now_ms()))
    rapport.runtime(ws, fresh=True)
    run_backfills(rapport)  # registers the new series (live at once: no events yet)
    raw = [
        {"type": "identify", "userId": "u-77", "traits": {"email": EMAIL, "phone": PHONE, "first_name": NAME,
                                                          "name": f"{NAME} Quorn", "address": {"city": "Oslo"}},
         "context": {"ip": IP, "consent": {"categoryPreferences": {"Analytics": True}}}},
        {"type": "track", "userId": "u-77", "event": "Order Completed", "properties": {"revenue": 10},
         "context": {"ip": IP, "traits": {"email": EMAIL}}},
        {"type": "track", "userId": "u-77", "event": "Gift Sent", "properties": {"to": {"email": GIFT}},
         "context": {"consent": {"categoryPreferences": {"Analytics": True}}}},
        {"type": "track", "userId": "u-77", "event": "Gift Sent", "properties": {"to": {"email": GIFT}},
         "context": {"consent": {"categoryPreferences": {"Analytics": True}}}},
        {"type": "identify", "anonymousId": "anon-5", "traits": {"email": EMAIL.upper()}},
    ]
    messages = [parse_message(m, implied_type=None, received_at=clock.now_ms(), batch_sent_at=None,
                              batch_context=None, new_id=lambda: clock.new_id("msg")) for m in raw]
    rapport.ingest(ws, messages).result()
    backfilled = "kind: ComputedTrait\nname: first_gift_to\nevent: Gift Sent\nproperty: to.email\naggregate: first\n"
    rapport.db.write(lambda c: resources.apply(c, ws, PERSONAL_TRAITS + "---\n" + backfilled, "test", clock.now_ms()))
    rapport.runtime(ws, fresh=True)
    run_backfills(rapport)  # fills the new series from the stored events
    rt = rapport.runtime(ws)

    def read(conn: object) -> dict[str, object]:
        reader = ProfileReader(conn, rt, rapport.keyring)  # type: ignore[arg-type]
        return reader.view(reader.find("email", EMAIL), clock.now_ms())

    view = rapport.db.read(read)  # type: ignore[arg-type]
    assert view["identifiers"]["email"] == [EMAIL.lower()]  # type: ignore[index]
    assert view["traits"]["first_name"] == NAME  # type: ignore[index]
    assert view["identifiers"]["user_id"] == ["u-77"]  # type: ignore[index]
    computed = view["computed"]
    assert (computed["last_gift_to"], computed["gift_recipients"]) == (GIFT, 1)  # type: ignore[index]
    assert computed["first_gift_to"] == GIFT  # type: ignore[index]
    rapport.close()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("r.db")]
    assert files
    blob = b"".join(p.read_bytes() for p in files)
    for secret in (EMAIL, EMAIL.lower(), EMAIL.upper(), PHONE, PHONE[1:], NAME, IP, GIFT):
        assert secret.encode() not in blob, f"{secret!r} found in clear text in the database files"
        assert secret.encode("utf-16-le") not in blob
    assert b"u-77" in blob  # pseudonymous ids stay readable: the scan itself works
