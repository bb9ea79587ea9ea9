"""Decisions riding in the tracking round trip: ``POST /v1/track?decide=home_hero,offers``.

A client that wants one call sends its event with the ``decide`` query parameter; the response, sent once the
event is committed, is ``{"success": true, "decisions": {...}}`` with each placement decided for the message's
person as a write-key caller sees it, so the event itself (a purchase, a consent change) already counts. Only
single-message endpoints take it: a batch may hold many people.

The person is the message's ``userId`` when the call proves it was given that id (``&user_hash=``, see
``rapport.workspaces.verification``), else its ``anonymousId`` (after an identify, the same person); a message
with neither usable is refused before it is stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rapport.content.compile import library
from rapport.decisions.service import (
    MAX_PLACEMENTS,
    DecideRequest,
    IdType,
    decide_request,
    placements_of,
)
from rapport.errors import ValidationError
from rapport.types import JsonObject, WorkspaceId
from rapport.workspaces import verification

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


def person(rapport: Rapport, ws: WorkspaceId, message: Message, user_hash: str | None) -> tuple[IdType, str]:
    """Whom the round trip decides for (checked before the message is stored): a verified ``userId``, else the
    ``anonymousId``; ``ForbiddenError`` when the message has only an unverified user id."""
    if message.user_id and verification.verified(rapport.keyring, rapport.runtime(ws), message.user_id, user_hash,
                                                 rapport.clock.now_ms()):
        return "user_id", message.user_id
    if message.anonymous_id:
        return "anonymous_id", message.anonymous_id
    raise verification.refused("'&user_hash=' on the call")


def decisions(rapport: Rapport, ws: WorkspaceId, message: Message, names: tuple[str, ...],
              who: tuple[IdType, str], user_hash: str | None) -> JsonObject:
    """The write-key view of each placement's decision for ``who`` (``person``, found before the message was
    stored)."""
    request = DecideRequest(who[0], who[1], names, _context(message), user_hash=user_hash)
    locale = message.body.get("context", {}).get("locale") if isinstance(message.body.get("context"), dict) else None
    if isinstance(locale, str):
        request = DecideRequest(request.id_type, request.id_value, names, request.context, locale,
                                user_hash=user_hash)
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
