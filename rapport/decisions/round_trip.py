"""Decisions riding in the tracking round trip: ``POST /v1/track?decide=home_hero,offers``.

A client that wants one call sends its event with the ``decide`` query parameter; the response, sent once the
event is committed, is ``{"success": true, "decisions": {...}}`` with each placement decided for the message's
person (``userId``, else ``anonymousId``) as a write-key caller sees it, so the event itself (a purchase, a
consent change) already counts. Only single-message endpoints take it: a batch may hold many people.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rapport.content.compile import library
from rapport.decisions.service import MAX_PLACEMENTS, DecideRequest, decide_request, placements_of
from rapport.errors import ValidationError
from rapport.types import JsonObject, WorkspaceId

if TYPE_CHECKING:
    from rapport.core import Rapport
    from rapport.ingestion.model import Message


def requested(value: str | None, *, single: bool) -> tuple[str, ...]:
    """The placement names of a ``decide`` query parameter (none when absent)."""
    if value is None:
        return ()
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    if not single:
        raise ValidationError("'decide' is taken by single-message endpoints (/v1/track, /v1/page, ...), not by a "
                              "batch", code="invalid_request")
    if not names or len(names) > MAX_PLACEMENTS:
        raise ValidationError(f"'decide' must name 1 to {MAX_PLACEMENTS} placements, comma-separated",
                              code="invalid_request")
    return names


def check(rapport: Rapport, ws: WorkspaceId, names: tuple[str, ...]) -> None:
    """Refuse unknown placements before the event is stored (without listing the known ones: a write key)."""
    placements_of(library(rapport.runtime(ws)), names, list_known=False)


def decisions(rapport: Rapport, ws: WorkspaceId, message: Message, names: tuple[str, ...]) -> JsonObject:
    """The write-key view of each placement's decision for the message's person."""
    if message.user_id:
        request = DecideRequest("user_id", message.user_id, names, _context(message))
    elif message.anonymous_id:
        request = DecideRequest("anonymous_id", message.anonymous_id, names, _context(message))
    else:
        return {}
    locale = message.body.get("context", {}).get("locale") if isinstance(message.body.get("context"), dict) else None
    if isinstance(locale, str):
        request = DecideRequest(request.id_type, request.id_value, names, request.context, locale)
    out: JsonObject = decide_request(rapport, ws, request, full=False)["decisions"]
    return out


def _context(message: Message) -> JsonObject:
    """The request context of a round trip: the message's page (path, url, referrer) and its event name."""
    context = message.body.get("context")
    page = context.get("page") if isinstance(context, dict) else None
    out: JsonObject = {"event": message.name} if message.type == "track" and message.name else {}
    if isinstance(page, dict):
        out["page"] = {k: page[k] for k in ("path", "url", "referrer", "title") if isinstance(page.get(k), str)}
    return out
