"""Quarantined messages: reading them back, and replaying them through the current tracking plans.

A tracking plan in ``quarantine`` mode stores a violating message apart (``BatchJob`` seals its body
under the workspace key). Once the plan or the sender is fixed, ``replay`` runs each message again
down the tracking API's path: ``parse_message``, the workspace's current plans, then ``BatchJob``
(the job ``Rapport.ingest`` queues). A message that now passes is stored and marked replayed in the
same transaction (its payload is dropped from quarantine: the event now holds it, under its
profile's key); one that still violates a plan stays with its new violations. A message stored meanwhile
(its sender retried) is deduplicated on its ``messageId`` as usual, and a replayed message is no
longer open, so replaying again stores nothing twice.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import orjson

from rapport.clock import parse_iso, to_iso
from rapport.errors import RapportError, ValidationError
from rapport.ingestion.model import IngestResult, IngestTally, Message, Quarantined
from rapport.ingestion.parse import parse_message
from rapport.ingestion.plans import check_plans
from rapport.ingestion.service import BatchJob
from rapport.privacy.crypto import Cipher
from rapport.storage.base import Conn, Row
from rapport.storage.sql import quarantine as quarantine_sql
from rapport.storage.sql import workspaces as ws_sql
from rapport.types import JsonObject, Millis, WorkspaceId
from rapport.workspaces.runtime import WorkspaceRuntime

if TYPE_CHECKING:
    from rapport.core import Rapport

CHUNK: Final = 500
"""Messages replayed per writer job."""
MAX_REPORTED: Final = 1000
"""Per-item errors kept with their messages; all of them are counted."""
MAX_IDS: Final = 10_000


@dataclass(frozen=True, slots=True)
class QuarantinedMessage:
    """One open quarantined message, its payload decrypted."""

    id: str
    seq: int
    message_id: str
    event: str | None
    plan: str
    violations: tuple[str, ...]
    received_at: Millis
    payload: JsonObject

    def to_json(self) -> JsonObject:
        return {"id": self.id, "message_id": self.message_id, "event": self.event, "type": self.payload.get("type"),
                "plan": self.plan, "violations": list(self.violations), "received_at": to_iso(self.received_at),
                "payload": self.payload}


@dataclass(frozen=True, slots=True)
class Selection:
    """What to replay: given ids, every open message of one event, or (neither) every open message."""

    ids: tuple[str, ...] | None = None
    event: str | None = None

    @classmethod
    def from_json(cls, body: Any) -> Selection:
        """From ``{"ids": [...]}``, ``{"event": NAME}`` or ``{"all": true}`` (exactly one of them)."""
        keys = ("ids", "event", "all")
        fields = body if isinstance(body, dict) else {}
        given = [k for k in keys if k in fields]
        unknown = sorted(k for k in fields if k not in keys)
        if len(given) != 1 or unknown:
            raise ValidationError("say what to replay with exactly one of {\"ids\": [...]}, {\"event\": NAME}"
                                  " or {\"all\": true}", code="invalid_request",
                                  details=[{"unknown": unknown}] if unknown else [])
        value = fields[given[0]]
        if given[0] == "ids":
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
                raise ValidationError("'ids' must be a non-empty list of quarantined message ids",
                                      code="invalid_request")
            if len(value) > MAX_IDS:
                raise ValidationError(f"'ids' lists {len(value)} ids; at most {MAX_IDS} per request",
                                      code="invalid_request")
            return cls(ids=tuple(dict.fromkeys(value)))
        if given[0] == "event":
            if not isinstance(value, str) or not value:
                raise ValidationError("'event' must be a non-empty event name", code="invalid_request")
            return cls(event=value)
        if value is not True:
            raise ValidationError("'all' must be true", code="invalid_request")
        return cls()

    def to_json(self) -> JsonObject:
        if self.ids is not None:
            return {"ids": len(self.ids)}
        return {"event": self.event} if self.event is not None else {"all": True}


@dataclass(frozen=True, slots=True)
class ReplayError:
    """Why one selected message was not stored; it stays in quarantine (unless it was not found)."""

    id: str
    message_id: str | None
    code: str
    message: str
    violations: tuple[str, ...] = ()

    def to_json(self) -> JsonObject:
        out: JsonObject = {"id": self.id, "message_id": self.message_id, "code": self.code, "message": self.message}
        if self.violations:
            out["violations"] = list(self.violations)
        return out


@dataclass(slots=True)
class ReplayReport(IngestTally):
    """What a replay did. ``accepted`` and ``duplicates`` left quarantine (stored now, or stored before);
    ``quarantined`` still violate a plan; ``invalid`` no longer parse; ``not_found`` were no open message."""

    matched: int = 0
    invalid: int = 0
    not_found: int = 0
    errors: list[ReplayError] = field(default_factory=list)

    @property
    def replayed(self) -> int:
        return self.accepted + self.duplicates

    def fail(self, error: ReplayError) -> None:
        if len(self.errors) < MAX_REPORTED:
            self.errors.append(error)

    def to_json(self) -> JsonObject:
        return {"matched": self.matched, "replayed": self.replayed, "accepted": self.accepted,
                "duplicates": self.duplicates, "restricted": self.restricted, "quarantined": self.quarantined,
                "invalid": self.invalid, "not_found": self.not_found, "errors": [e.to_json() for e in self.errors]}


# --- reading ---------------------------------------------------------------------------------------

def open_payload(cipher: Cipher, ws: WorkspaceId, sealed: bytes) -> JsonObject:
    """A stored payload decrypted (``BatchJob`` seals it under the workspace key, the workspace id as AAD)."""
    body: JsonObject = orjson.loads(cipher.decrypt(sealed, ws.encode()))
    return body


def _message(cipher: Cipher, ws: WorkspaceId, row: Row) -> QuarantinedMessage:
    seq, qid, message_id, event, plan, violations, payload, received = row
    return QuarantinedMessage(str(qid), int(seq), str(message_id), event, str(plan),
                              tuple(orjson.loads(violations)), int(received), open_payload(cipher, ws, bytes(payload)))


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"q:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        tag, seq = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(":")
        if tag != "q":
            raise ValueError(tag)
        return int(seq)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ValidationError(f"invalid cursor {cursor!r}", code="invalid_cursor") from None


def page(rapport: Rapport, ws: WorkspaceId, *, event: str | None = None, cursor: str | None = None,
         limit: int = 50) -> tuple[list[QuarantinedMessage], str | None]:
    """Open quarantined messages, newest first, and the cursor of the next page (None on the last)."""
    before = decode_cursor(cursor) if cursor else None
    cipher = _cipher(rapport, rapport.runtime(ws))
    rows = rapport.db.read(lambda c: quarantine_sql.newest(c, ws, event, before, limit + 1))
    items = [_message(cipher, ws, r) for r in rows[:limit]]
    return items, encode_cursor(items[-1].seq) if len(rows) > limit else None


def count(rapport: Rapport, ws: WorkspaceId, event: str | None = None) -> int:
    return rapport.db.read(lambda c: quarantine_sql.count_open(c, ws, event))


def _cipher(rapport: Rapport, rt: WorkspaceRuntime) -> Cipher:
    return rapport.keyring.workspace_cipher(rt.id, rt.wrapped_key)


# --- replaying --------------------------------------------------------------------------------------

def replay(rapport: Rapport, ws: WorkspaceId, selection: Selection, actor: str, *,
           chunk_size: int = CHUNK) -> ReplayReport:
    """Run the selected open messages through the current plans and store those that pass (module doc)."""
    rt = rapport.runtime(ws, fresh=True)
    replayer = _Replayer(rapport, rt, actor, selection)
    report = replayer.report

    def open_among(ids: Sequence[str]) -> list[Row]:
        return rapport.db.read(lambda c: quarantine_sql.by_ids(c, ws, ids))

    def open_after(seq: int) -> list[Row]:
        return rapport.db.read(lambda c: quarantine_sql.oldest(c, ws, selection.event, seq, chunk_size))

    if selection.ids is not None:
        for start in range(0, len(selection.ids), chunk_size):
            wanted = selection.ids[start:start + chunk_size]
            rows = open_among(wanted)
            found = {str(r[1]) for r in rows}
            for qid in wanted:
                if qid not in found:
                    report.not_found += 1
                    report.fail(ReplayError(qid, None, "quarantine_not_found",
                                            f"no open quarantined message {qid!r} (replayed already, or unknown)"))
            replayer.run(rows)
        return report
    rows = open_after(0)
    while rows:
        replayer.run(rows)
        rows = open_after(int(rows[-1][0]))
    return report


def replay_plans(plans: Sequence[JsonObject]) -> list[JsonObject]:
    """The plans as a replay applies them: what a ``reject`` plan refuses stays in quarantine.

    The message was once accepted for safekeeping, so refusing it now would destroy it. The former
    ``reject`` plans come first, so a message breaking one is kept under that plan's name.
    """
    strict = [{**p, "mode": "quarantine"} for p in plans if p.get("mode", "reject") == "reject"]
    return strict + [p for p in plans if p.get("mode", "reject") != "reject"]


def replayable(body: JsonObject, received_at: Millis, new_id: Callable[[], str]) -> Message:
    """A stored body parsed again as the tracking API parses a message (raises ``ItemInvalid``).

    The stored ``timestamp`` is already corrected for clock skew, so it is parsed without the
    ``sentAt`` that corrected it (correcting twice would move it), and the fields parsing rewrites
    (``sentAt``, ``originalTimestamp``) are then put back as they were stored.
    """
    kept: JsonObject = {k: body[k] for k in ("sentAt", "originalTimestamp") if k in body}
    raw = {k: v for k, v in body.items() if k != "sentAt"}
    # The size limit was checked at the door on the bytes the sender sent; the stored body has
    # grown by the fields parsing adds, so it is not measured again.
    message = parse_message(raw, implied_type=None, received_at=received_at, batch_sent_at=None,
                            batch_context=None, new_id=new_id, size=0)
    return dataclasses.replace(message, body={**message.body, **kept}) if kept else message


class _Replayer:
    """Replays chunks of quarantine rows, one writer job per chunk, into one report."""

    def __init__(self, rapport: Rapport, rt: WorkspaceRuntime, actor: str, selection: Selection) -> None:
        self.rapport, self.rt, self.actor, self.selection = rapport, rt, actor, selection
        self.cipher = _cipher(rapport, rt)
        self.plans = replay_plans(rt.plans)
        self.report = ReplayReport()

    def run(self, rows: Sequence[Row]) -> None:
        report, ws = self.report, self.rt.id
        passed: list[tuple[str, Message]] = []
        still: list[tuple[str, Quarantined]] = []
        for row in rows:
            report.matched += 1
            qid, message_id, received = str(row[1]), str(row[2]), int(row[7])
            try:
                body = open_payload(self.cipher, ws, bytes(row[6]))
                at = body.get("receivedAt")
                message = replayable(body, parse_iso(at) if isinstance(at, str) else received,
                                     lambda: self.rapport.clock.new_id("msg"))
            except (RapportError, ValueError) as exc:
                report.invalid += 1
                code, text = (exc.code, exc.message) if isinstance(exc, RapportError) else ("invalid_message", str(exc))
                report.fail(ReplayError(qid, message_id, code, text))
                continue
            accepted, quarantined, _ = check_plans(self.plans, [(0, message)])
            if accepted:
                passed.append((qid, accepted[0]))
            else:
                still.append((qid, quarantined[0]))
        if not passed and not still:
            return
        claimed, result = self.rapport.db.submit(self._job(passed, still), weight=max(1, len(passed))).result()
        report.add(result)
        for qid, q in still:
            report.quarantined += 1
            report.fail(ReplayError(qid, q.message.message_id, "tracking_plan_violation",
                                    f"still violates tracking plan {q.plan!r}: " + "; ".join(q.violations),
                                    q.violations))
        for qid, message in passed:
            if qid not in claimed:
                report.not_found += 1
                report.fail(ReplayError(qid, message.message_id, "quarantine_not_found",
                                        f"quarantined message {qid!r} was replayed meanwhile"))

    def _job(self, passed: list[tuple[str, Message]],
             still: list[tuple[str, Quarantined]]) -> Callable[[Conn], tuple[set[str], IngestResult]]:
        rapport, rt, ws = self.rapport, self.rt, self.rt.id

        def job(conn: Conn) -> tuple[set[str], IngestResult]:
            now = rapport.clock.now_ms()
            # Claimed and stored in one transaction: a crash leaves both undone, and a concurrent
            # replay of the same message finds it claimed and stores nothing.
            claimed = quarantine_sql.claim(conn, ws, [qid for qid, _ in passed], now) if passed else set()
            messages = [m for qid, m in passed if qid in claimed]
            result = BatchJob(rt, rapport.keyring, rapport.clock, messages).run(conn) if messages \
                else IngestResult(0, 0, 0, 0)
            if still:
                quarantine_sql.update_violations(conn, ws, [
                    (q.plan, orjson.dumps(list(q.violations)).decode(), qid) for qid, q in still])
            ws_sql.audit(conn, ws, self.actor, "quarantine.replay", ws, {
                "selection": self.selection.to_json(), "replayed": sorted(claimed), "still_quarantined": len(still),
                "accepted": result.accepted, "duplicates": result.duplicates}, now)
            return claimed, result

        return job
