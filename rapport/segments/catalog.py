"""Reading and operating segments for the API and the CLI: catalog, versions, preview, members,
export, explain, history, overlap and refresh."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from rapport.clock import to_iso
from rapport.consent.decide import may_use
from rapport.errors import NotFoundError, ValidationError
from rapport.profiles.service import ProfileReader
from rapport.rules import event_functions, to_text
from rapport.segments import service
from rapport.segments.export import PAGE, Row, personal_columns
from rapport.storage.base import Conn
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import identity as identity_sql
from rapport.storage.sql import resources as resources_sql
from rapport.storage.sql import segments as segments_sql
from rapport.storage.sql import workspaces as ws_sql
from rapport.storage.sql.consent import ledger_entry
from rapport.types import JsonObject, Millis, WorkspaceId
from rapport.workspaces.runtime import CompiledSegment, WorkspaceRuntime

if TYPE_CHECKING:
    from rapport.core import Rapport


def lineage(segment: CompiledSegment, rt: WorkspaceRuntime) -> JsonObject:
    """What the segment's rule reads: trait and computed-trait names, events, purposes, segments."""
    events = {fn.event for fn in event_functions(segment.rule)} if segment.rule is not None else set()
    for name in segment.computed:
        trait = rt.traits.get(name)
        if trait is not None:
            events.update(key.event for key in trait.all_series())
    return {"traits": sorted(segment.traits), "computed": sorted(segment.computed), "events": sorted(events),
            "consent": sorted(segment.consent), "segments": sorted(segment.segments)}


def spec_changes(before: JsonObject, after: JsonObject) -> list[JsonObject]:
    """The fields whose value differs between two versions of a spec, in field order, ``name`` aside."""
    fields = [k for k in (*before, *(k for k in after if k not in before)) if k != "name"]
    return [{"field": k, "before": before.get(k), "after": after.get(k)} for k in fields
            if before.get(k) != after.get(k)]


class Segments:
    """One workspace's segments, read and operated through a ``Rapport``."""

    def __init__(self, rapport: Rapport, ws: WorkspaceId) -> None:
        self.rapport = rapport
        self.ws = ws
        self.rt = rapport.runtime(ws)

    def _segment(self, name: str) -> CompiledSegment:
        segment = self.rt.segments.get(name)
        if segment is None:
            raise NotFoundError(f"no segment {name!r}", code="segment_not_found")
        return segment

    def _entry(self, conn: Conn, segment: CompiledSegment, refreshed: dict[tuple[str, int], int]) -> JsonObject:
        spec = segment.spec
        last = refreshed.get((segment.name, segment.version))
        upcoming = service.next_refresh(segment, last)
        return {
            "name": segment.name, "version": segment.version, "rule": spec.get("rule"),
            "description": spec.get("description"), "owner": spec.get("owner"), "purpose": segment.purpose,
            "sensitivity": spec.get("sensitivity"), "group": segment.group, "priority": segment.priority,
            "default": segment.is_default, "fixtures": spec.get("fixtures"), "lineage": lineage(segment, self.rt),
            "members": segments_sql.count(conn, self.ws, segment.name),
            "state": "ready" if last is not None else "refreshing",
            "refresh": spec.get("refresh"),
            "refreshed_at": None if last is None else to_iso(last),
            "next_refresh_at": None if upcoming is None else to_iso(upcoming),
        }

    def catalog(self) -> list[JsonObject]:
        def read(conn: Conn) -> list[JsonObject]:
            done = segments_sql.refresh_times(conn, self.ws)
            return [self._entry(conn, s, done) for s in sorted(self.rt.segments.values(), key=lambda s: s.name)]

        return self.rapport.db.read(read)

    def describe(self, name: str) -> JsonObject:
        segment = self._segment(name)
        return self.rapport.db.read(lambda c: self._entry(c, segment, segments_sql.refresh_times(c, self.ws)))

    def versions(self, name: str) -> JsonObject:
        """Every applied version of the segment, oldest first, each with what changed from the one before:
        ``changes`` lists the fields that differ (``before`` / ``after``; absent fields are null)."""
        rows = self.rapport.db.read(lambda c: resources_sql.history(c, self.ws, "Segment", name))
        if not rows:
            raise NotFoundError(f"no segment {name!r}", code="segment_not_found")
        out: list[JsonObject] = []
        previous: JsonObject = {}
        for version, spec_text, _digest, deleted, actor, applied_at in rows:
            spec = orjson.loads(spec_text)
            current: JsonObject = {} if deleted else spec
            out.append({"version": int(version), "applied_at": to_iso(int(applied_at)), "actor": actor,
                        "deleted": bool(deleted), "spec": spec, "changes": spec_changes(previous, current)})
            previous = current
        return {"segment": name, "versions": out}

    def preview(self, text: str, at: Millis, limit: int, cursor: str | None) -> JsonObject:
        """The profiles ``text`` selects at ``at`` (count, and a page of members by id)."""
        from rapport.segments.check import check_rule
        from rapport.segments.sql import compile_rule

        rule = check_rule(text, self.rt, self.rt.segments.keys())

        def read(conn: Conn) -> JsonObject:
            sql, params = compile_rule(rule, self.rt, conn.dialect, at)
            ids = [str(r[0]) for r in conn.all(sql, params)]
            after = [i for i in ids if cursor is None or i > cursor]
            page = after[:limit]
            return {"count": len(ids), "members": self._members_json(conn, page),
                    "next": page[-1] if len(after) > limit else None}

        return self.rapport.db.read(read)

    def _members_json(self, conn: Conn, ids: Sequence[str]) -> list[JsonObject]:
        reader = ProfileReader(conn, self.rt, self.rapport.keyring)
        return [{"id": pid, "identifiers": reader.identifiers(pid)} for pid in ids]

    def _activatable(self, conn: Conn, segment: CompiledSegment, ids: Sequence[str], at: Millis) -> dict[str, bool]:
        if segment.purpose is None or segment.purpose not in self.rt.catalog:
            return dict.fromkeys(ids, True)
        purpose = self.rt.catalog.get(segment.purpose)
        ledgers: dict[str, list[Any]] = {p: [] for p in ids}
        for row in consent_sql.entries(conn, self.ws, list(ids)):
            ledgers[str(row[2])].append(ledger_entry(row))
        return {p: may_use(ledgers[p], purpose, at).allowed for p in ids}

    def members(self, name: str, cursor: str | None, limit: int, activatable: bool | None) -> JsonObject:
        """Current members after ``cursor`` by profile id; ``activatable`` filters on consent for the
        segment's purpose (qualified members without it are listed apart)."""
        segment = self._segment(name)
        at = self.rapport.clock.now_ms()

        def read(conn: Conn) -> JsonObject:
            out: list[JsonObject] = []
            after = cursor
            more = False
            while len(out) <= limit:
                rows = segments_sql.page(conn, self.ws, name, after, 500)
                if not rows:
                    break
                ids = [str(r[0]) for r in rows]
                flags = self._activatable(conn, segment, ids, at)
                for pid, version, entered in rows:
                    if activatable is None or flags[str(pid)] == activatable:
                        if len(out) == limit:
                            more = True
                            break
                        out.append({"id": str(pid), "version": int(version), "entered_at": to_iso(int(entered)),
                                    "activatable": flags[str(pid)]})
                if more:
                    break
                after = ids[-1]
            for item, extra in zip(out, self._members_json(conn, [str(m["id"]) for m in out]), strict=True):
                item["identifiers"] = extra["identifiers"]
            return {"segment": name, "purpose": segment.purpose, "members": out,
                    "next": str(out[-1]["id"]) if more else None}

        return self.rapport.db.read(read)

    def export(self, name: str, personal: Sequence[str] = (), page_size: int = PAGE) -> Iterator[list[Row]]:
        """Current members by profile id, one page of rows per read: profile_id, entered_at, version,
        activatable, user_id, anonymous_id, then the ``personal`` identifier types asked for (of
        ``export.PERSONAL``, in that order); several values of a type are joined with ``;``, none is ``None``.

        The segment is looked up now (an unknown one raises here, before any row); each page is its
        own read, so a long export holds no connection and sees each page as of its read."""
        segment = self._segment(name)
        extra = personal_columns(personal)
        at = self.rapport.clock.now_ms()

        def pages() -> Iterator[list[Row]]:
            after: str | None = None
            while True:
                page = self.rapport.db.read(partial(self._export_page, segment=segment, after=after, extra=extra,
                                                    at=at, size=page_size))
                if page:
                    yield page
                if len(page) < page_size:
                    return
                after = str(page[-1][0])

        return pages()

    def _export_page(self, conn: Conn, *, segment: CompiledSegment, after: str | None, extra: Sequence[str],
                     at: Millis, size: int) -> list[Row]:
        rows = segments_sql.page(conn, self.ws, segment.name, after, size)
        flags = self._activatable(conn, segment, [str(r[0]) for r in rows], at)
        reader = ProfileReader(conn, self.rt, self.rapport.keyring)
        out: list[Row] = []
        for pid, version, entered in rows:
            values: dict[str, list[str]] = {}
            # Only the types asked for are decrypted: an export without e-mail never opens one.
            for id_type, key, enc, origin, _first in identity_sql.identifiers_of(conn, self.ws, str(pid)):
                if enc is None:
                    values.setdefault(id_type, []).append(key)
                elif id_type in extra:
                    values.setdefault(id_type, []).append(
                        reader.cipher(origin).decrypt(bytes(enc), id_type.encode()).decode())
            joined = [";".join(values[t]) if values.get(t) else None for t in ("user_id", "anonymous_id", *extra)]
            out.append((str(pid), to_iso(int(entered)), int(version), flags[str(pid)], *joined))
        return out

    def explain(self, name: str, profile_id: str, at: Millis) -> JsonObject:
        """The rule tree for one profile at ``at``, each node with its value."""
        from rapport.segments.explain import explain_profile

        segment = self._segment(name)

        def read(conn: Conn) -> JsonObject:
            live = ProfileReader(conn, self.rt, self.rapport.keyring).live_id(profile_id)
            current = {str(r[1]) for r in segments_sql.current(conn, self.ws, [live])}
            tree = explain_profile(conn, self.rt, segment, live, at)
            return {"segment": name, "profile_id": live, "as_of": to_iso(at), "member": name in current,
                    "rule": None if segment.rule is None else to_text(segment.rule), "tree": tree}

        return self.rapport.db.read(read)

    def history(self, name: str, profile_id: str | None, cursor: str | None, limit: int) -> JsonObject:
        self._segment(name)
        try:
            before = int(cursor) if cursor else None
        except ValueError:
            raise ValidationError("'cursor' must come from a previous 'next'", code="invalid_cursor") from None
        rows = self.rapport.db.read(lambda c: segments_sql.history(
            c, self.ws, segment=name, profile_id=profile_id, before=before, limit=limit + 1))
        page = rows[:limit]
        return {"segment": name, "stays": [
            {"profile_id": str(p), "version": int(v), "entered_at": to_iso(int(e)),
             "exited_at": None if x is None else to_iso(int(x))} for _seq, _s, p, v, e, x in page],
            "next": str(page[-1][0]) if len(rows) > limit else None}

    def overlap(self, names: Sequence[str]) -> JsonObject:
        """Members shared by each pair of ``names`` (current members)."""
        for name in names:
            self._segment(name)
        if not 1 <= len(names) <= 50:
            raise ValidationError("give 1 to 50 segment names", code="invalid_request")
        sets = self.rapport.db.read(lambda c: {n: segments_sql.members(c, self.ws, n) for n in names})
        return {"segments": list(names), "sizes": {n: len(sets[n]) for n in names},
                "matrix": [[len(sets[a] & sets[b]) for b in names] for a in names]}

    def refresh(self, names: Sequence[str] | None, actor: str) -> list[JsonObject]:
        """Batch recomputation by SQL reconciled with the live state (see ``service.refresh``)."""
        for name in names or ():
            self._segment(name)
        rt, clock = self.rt, self.rapport.clock

        def audit(conn: Conn, report: list[service.Reconciliation]) -> None:
            ws_sql.audit(conn, self.ws, actor, "segments.refresh", ",".join(r.segment for r in report),
                         {"differences": sum(r.entered + r.exited for r in report)}, clock.now_ms())

        report = service.refresh_database(self.rapport.db, rt, clock, names, after=audit)
        return [{"name": r.segment, "members": r.members, "entered": r.entered, "exited": r.exited,
                 "differences": r.entered + r.exited} for r in report]
