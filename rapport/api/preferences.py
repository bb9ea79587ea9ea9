"""The preference center and RFC 8058 one-click unsubscribe, reached through a person's signed link.

No admin token here: the signed link (``rapport.consent.links``) is the credential, and it names one
profile of one workspace. Every change is a consent ledger entry with provenance: source
``preference_center`` or ``unsubscribe_link``, recorded and effective at the request time, and a
proof holding the link's issue time and a hash of the client. Each opt-out also writes an ``Unsubscribed`` event
(``rapport.consent.unsubscribed``), so guardrails and journeys that read events see it.

``GET /unsubscribe/{token}`` only shows a confirmation form, because mail scanners and link
previewers follow GET links; the withdrawal happens on ``POST`` with ``List-Unsubscribe=One-Click``
(RFC 8058), as mailbox providers send it, within the request. A repeated one-click POST adds nothing
while the purpose's latest choice is already a withdrawal or denial (two racing POSTs on PostgreSQL
can at worst record the same withdrawal twice, which decides the same).

Subscription groups (``SubscriptionGroup`` resources) are listed beside the purposes with the person's
membership, and changed by the same form; a group message's one-click link (``?group=NAME``) leaves that
group only. Group choices are ledger entries too (``rapport.consent.subscriptions``).

Pages are server-rendered HTML with every value escaped, inline styles only, and headers that keep
the token out of caches, referrers and search engines. They show no personal data beyond the
person's choices, since links get forwarded. Clients asking for ``application/json`` get JSON,
including the one error shape for refused links (403, or 410 when expired or the person is gone).
"""

from __future__ import annotations

import email.policy
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.parser import BytesParser
from html import escape
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, Response

from rapport.api.body import read_limited
from rapport.api.errors import error_response
from rapport.api.json import json_response
from rapport.consent import links, subscriptions, unsubscribed
from rapport.consent import service as consent_service
from rapport.consent.decide import current_state, latest_entry
from rapport.consent.model import NECESSARY, Decision, Purpose
from rapport.consent.subscriptions import Membership
from rapport.core import Rapport
from rapport.errors import NotFoundError, UserError, ValidationError
from rapport.resources.builtin.subscription_group import SubscriptionGroup
from rapport.storage.base import Conn
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import identity as identity_sql
from rapport.types import Millis, WorkspaceId
from rapport.workspaces.runtime import WorkspaceRuntime

PAGE_SOURCE = "preference_center"
UNSUBSCRIBE_SOURCE = "unsubscribe_link"
ONE_CLICK = ("List-Unsubscribe", "One-Click")
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 400
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
}
_STATUS = {
    "granted": "On: you agreed",
    "legal_basis": "On: we rely on {basis}; untick to object",
    "no_record": "Off: you have not agreed",
    "denied": "Off: you declined",
    "withdrawn": "Off: you withdrew",
    "expired": "Off: your agreement expired",
}


@dataclass(frozen=True, slots=True)
class Choice:
    """One purpose as the page shows it: what it is and the current decision about it."""

    purpose: Purpose
    decision: Decision

    @property
    def is_subscription(self) -> bool:
        """Purposes tied to a channel are the person's subscriptions (email, SMS, push)."""
        return self.purpose.channel is not None

    def to_json(self) -> dict[str, object]:
        return {"purpose": self.purpose.name, "description": self.purpose.description,
                "channel": self.purpose.channel, "legal_basis": self.purpose.legal_basis,
                "allowed": self.decision.allowed, "reason": self.decision.reason}


def router(rapport: Rapport, *, max_age: Millis = links.MAX_AGE) -> APIRouter:
    """Routes of the preference center and one-click unsubscribe; links older than ``max_age`` are refused."""
    api = APIRouter(tags=["preferences"])

    def key_for(ws: WorkspaceId) -> bytes | None:
        try:
            return links.link_key(rapport.keyring, rapport.runtime(ws))
        except NotFoundError:
            return None

    def open_link(token: str) -> tuple[WorkspaceRuntime, links.LinkClaims]:
        claims = links.verify(token, rapport.clock.now_ms(), max_age, key_for)
        return rapport.runtime(claims.workspace_id), claims

    def person(conn: Conn, rt: WorkspaceRuntime, claims: links.LinkClaims) -> str:
        root = identity_sql.live_root(conn, rt.id, claims.profile_id)
        if root is None:
            raise links.LinkGone("this link's person is no longer known here (the profile was erased)",
                                  code="link_profile_gone")
        return root

    def choices(conn: Conn, rt: WorkspaceRuntime, claims: links.LinkClaims, pid: str, at: Millis) -> list[Choice]:
        entries = [consent_sql.ledger_entry(r) for r in consent_sql.entries(conn, rt.id, [pid])]
        state = current_state(entries, rt.catalog, at)
        shown = [Choice(p, state[p.name]) for p in rt.catalog if p.name != NECESSARY and claims.covers(p.name)]
        return sorted(shown, key=lambda c: (not c.is_subscription, c.purpose.name))

    def groups(conn: Conn, rt: WorkspaceRuntime, claims: links.LinkClaims, pid: str, at: Millis) -> list[Membership]:
        entries = [consent_sql.ledger_entry(r) for r in consent_sql.entries(conn, rt.id, [pid])]
        return [subscriptions.membership(entries, g, at) for _, g in sorted(rt.subscription_groups.items())
                if claims.covers(subscriptions.ledger_key(g.name))]

    def record(conn: Conn, rt: WorkspaceRuntime, pid: str, purpose: str, state: str, source: str,
               proof: str) -> None:
        consent_service.record(conn, rt, rapport.keyring, rapport.clock, {
            "profile_id": pid, "purpose": purpose, "state": state, "source": source, "proof": proof}, source)

    @api.get("/preferences/{token}")
    async def preferences(token: str, request: Request) -> Response:
        """The person's consents and subscriptions, with a form to change them."""
        async def work() -> Response:
            def view() -> tuple[list[Choice], list[Membership]]:
                rt, claims = open_link(token)
                at = rapport.clock.now_ms()

                def read(c: Conn) -> tuple[list[Choice], list[Membership]]:
                    pid = person(c, rt, claims)
                    return choices(c, rt, claims, pid, at), groups(c, rt, claims, pid, at)
                return rapport.db.read(read)
            shown, members = await run_in_threadpool(view)
            if wants_json(request):
                return json_response({"purposes": [c.to_json() for c in shown],
                                      "groups": [m.to_json() for m in members]}, headers=PAGE_HEADERS)
            return html(preferences_page(request.url.path, shown, None, members))
        return await answer(request, work)

    @api.post("/preferences/{token}")
    async def change_preferences(token: str, request: Request) -> Response:
        """Apply the submitted form: a ledger entry for each purpose whose choice changed."""
        async def work() -> Response:
            fields = form_fields(request.headers.get("content-type", ""), await read_limited(request, MAX_FORM_BYTES))
            listed, ticked = ticked_of_shown(fields, "shown", "granted", "purposes", "purposes")
            listed_groups, joined = ticked_of_shown(fields, "group_shown", "group", "subscription groups", "groups")

            def apply() -> tuple[list[Choice], list[str], list[Membership], list[str]]:
                rt, claims = open_link(token)
                proof = links.link_proof(claims, client_ip(request), request.headers.get("user-agent"))
                wanted = [named_group(rt, claims, name) for name in dict.fromkeys(listed_groups)]

                def job(conn: Conn) -> tuple[list[Choice], list[str], list[Membership], list[str]]:
                    pid = person(conn, rt, claims)
                    at = rapport.clock.now_ms()
                    current = {c.purpose.name: c for c in choices(conn, rt, claims, pid, at)}
                    changed = []
                    for name in dict.fromkeys(listed):
                        purpose = target(rt, claims, name)
                        want = name in ticked
                        if want != current[purpose.name].decision.allowed:
                            record(conn, rt, pid, purpose.name, "granted" if want else "withdrawn", PAGE_SOURCE, proof)
                            if not want:
                                unsubscribed.record(conn, rt, pid, source=PAGE_SOURCE, at=at, purpose=purpose.name)
                            changed.append(purpose.name)
                    members = {m.group.name: m for m in groups(conn, rt, claims, pid, at)}
                    changed_groups = []
                    for group in wanted:
                        want = group.name in joined
                        if want != members[group.name].subscribed:
                            subscriptions.record(conn, rt, rapport.clock, pid, group.name,
                                                 "granted" if want else "withdrawn", PAGE_SOURCE, proof)
                            if not want:
                                unsubscribed.record(conn, rt, pid, source=PAGE_SOURCE, at=at, group=group.name)
                            changed_groups.append(group.name)
                    return (choices(conn, rt, claims, pid, at), changed, groups(conn, rt, claims, pid, at),
                            changed_groups)
                return rapport.db.write(job)
            shown, changed, members, changed_groups = await run_in_threadpool(apply)
            if wants_json(request):
                return json_response({"purposes": [c.to_json() for c in shown], "changed": changed,
                                      "groups": [m.to_json() for m in members], "changed_groups": changed_groups},
                                     headers=PAGE_HEADERS)
            count = len(changed) + len(changed_groups)
            notice = f"Saved: {count} change{'s' if count != 1 else ''}." if count else "No changes."
            return html(preferences_page(request.url.path, shown, notice, members))
        return await answer(request, work)

    @api.get("/unsubscribe/{token}")
    async def confirm_unsubscribe(token: str, request: Request, purpose: str | None = None,
                                  group: str | None = None) -> Response:
        """A confirmation page whose form makes the one-click POST; following this link changes nothing."""
        async def work() -> Response:
            def view_group() -> Membership | None:
                rt, claims = open_link(token)
                found = group_target(rt, claims, group, purpose)
                if found is None:
                    return None
                at = rapport.clock.now_ms()
                current = rapport.db.read(lambda c: groups(c, rt, claims, person(c, rt, claims), at))
                return next(m for m in current if m.group.name == found.name)
            member = await run_in_threadpool(view_group)
            if member is not None:
                if wants_json(request):
                    return json_response(member.to_json(), headers=PAGE_HEADERS)
                action = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return html(confirm_group_page(action, member))

            def view() -> Choice:
                rt, claims = open_link(token)
                found = target(rt, claims, purpose)
                at = rapport.clock.now_ms()
                current = rapport.db.read(lambda c: choices(c, rt, claims, person(c, rt, claims), at))
                return next(c for c in current if c.purpose.name == found.name)
            choice = await run_in_threadpool(view)
            if wants_json(request):
                return json_response(choice.to_json(), headers=PAGE_HEADERS)
            action = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return html(confirm_page(action, choice))
        return await answer(request, work)

    @api.post("/unsubscribe/{token}")
    async def unsubscribe(token: str, request: Request, purpose: str | None = None,
                          group: str | None = None) -> Response:
        """RFC 8058 one-click unsubscribe: body ``List-Unsubscribe=One-Click``; withdraws consent at once (or,
        for a group message's link, leaves the group)."""
        async def work() -> Response:
            fields = form_fields(request.headers.get("content-type", ""), await read_limited(request, MAX_FORM_BYTES))
            if ONE_CLICK not in fields:
                raise ValidationError("a one-click unsubscribe POST must carry 'List-Unsubscribe=One-Click' "
                                      "(RFC 8058) as form data", code="not_one_click")

            def leave() -> tuple[SubscriptionGroup, bool] | None:
                rt, claims = open_link(token)
                found = group_target(rt, claims, group, purpose)
                if found is None:
                    return None
                proof = links.link_proof(claims, client_ip(request), request.headers.get("user-agent"))

                def job(conn: Conn) -> bool:
                    pid = person(conn, rt, claims)
                    entries = [consent_sql.ledger_entry(r) for r in consent_sql.entries(conn, rt.id, [pid])]
                    latest = latest_entry(entries, subscriptions.ledger_key(found.name), rapport.clock.now_ms())
                    if latest is not None and latest.state in ("denied", "withdrawn"):
                        return False
                    subscriptions.record(conn, rt, rapport.clock, pid, found.name, "withdrawn", UNSUBSCRIBE_SOURCE,
                                         proof)
                    unsubscribed.record(conn, rt, pid, source=UNSUBSCRIBE_SOURCE, at=rapport.clock.now_ms(),
                                        group=found.name)
                    return True
                return found, rapport.db.write(job)
            left = await run_in_threadpool(leave)
            if left is not None:
                if wants_json(request):
                    return json_response({"group": left[0].name, "state": "withdrawn", "recorded": left[1]},
                                         headers=PAGE_HEADERS)
                return html(done_group_page(left[0]))

            def apply() -> tuple[Purpose, bool]:
                rt, claims = open_link(token)
                found = target(rt, claims, purpose)
                proof = links.link_proof(claims, client_ip(request), request.headers.get("user-agent"))

                def job(conn: Conn) -> bool:
                    pid = person(conn, rt, claims)
                    entries = [consent_sql.ledger_entry(r) for r in consent_sql.entries(conn, rt.id, [pid])]
                    latest = latest_entry(entries, found.name, rapport.clock.now_ms())
                    if latest is not None and latest.state in ("denied", "withdrawn"):
                        return False
                    record(conn, rt, pid, found.name, "withdrawn", UNSUBSCRIBE_SOURCE, proof)
                    unsubscribed.record(conn, rt, pid, source=UNSUBSCRIBE_SOURCE, at=rapport.clock.now_ms(),
                                        purpose=found.name)
                    return True
                return found, rapport.db.write(job)
            found, recorded = await run_in_threadpool(apply)
            if wants_json(request):
                return json_response({"purpose": found.name, "state": "withdrawn", "recorded": recorded},
                                     headers=PAGE_HEADERS)
            return html(done_page(found))
        return await answer(request, work)

    return api


def target(rt: WorkspaceRuntime, claims: links.LinkClaims, name: str | None) -> Purpose:
    """The purpose a request acts on: ``name``, or the link's only purpose when ``name`` is not given."""
    if name is None:
        if claims.scope == links.ALL or len(claims.scope) != 1:
            raise ValidationError("say which purpose to unsubscribe from with '?purpose=NAME'", code="purpose_required")
        name = claims.scope[0]
    purpose = rt.catalog.get(name)
    if purpose.name == NECESSARY:
        raise ValidationError(f"{NECESSARY!r} is always allowed and cannot be changed here",
                              code="invalid_preferences", details=[{"purpose": NECESSARY}])
    if not claims.covers(purpose.name):
        covered = ", ".join(claims.scope)
        raise links.LinkError(f"this link covers {covered} only, not {purpose.name!r}", code="link_scope",
                              details=[{"purpose": purpose.name, "scope": list(claims.scope)}])
    return purpose


def group_target(rt: WorkspaceRuntime, claims: links.LinkClaims, name: str | None,
                 purpose: str | None = None) -> SubscriptionGroup | None:
    """The subscription group a request acts on: ``name``, or the group a group message's link covers when no
    purpose is named either; ``None`` for a request about a purpose."""
    scope = () if claims.scope == links.ALL else claims.scope
    if name is None:
        if purpose is not None or len(scope) != 1 or not scope[0].startswith(subscriptions.PREFIX):
            return None
        name = scope[0].removeprefix(subscriptions.PREFIX)
    elif purpose is not None:
        raise ValidationError("name either '?purpose=' or '?group=', not both", code="invalid_preferences")
    return named_group(rt, claims, name)


def named_group(rt: WorkspaceRuntime, claims: links.LinkClaims, name: str) -> SubscriptionGroup:
    """The subscription group ``name``, which the link must cover and the workspace still define."""
    if not claims.covers(subscriptions.ledger_key(name)):
        raise links.LinkError(f"this link does not cover subscription group {name!r}", code="link_scope",
                              details=[{"group": name}])
    group = rt.subscription_groups.get(name)
    if group is None:
        raise links.LinkGone(f"the subscription group {name!r} no longer exists; its messages are no longer sent",
                             code="subscription_group_gone", details=[{"group": name}])
    return group


async def answer(request: Request, work: Callable[[], Awaitable[Response]]) -> Response:
    """``work``'s response, or a refusal in the form the client asked for: the one JSON error shape
    for API clients, a small HTML page for people."""
    try:
        return await work()
    except UserError as exc:
        if wants_json(request):
            return error_response(exc.status, exc.code, exc.message, exc.details, dict(PAGE_HEADERS))
        return html(error_page(exc), exc.status)


def wants_json(request: Request) -> bool:
    """Whether the client prefers JSON to HTML (browsers list text/html; API clients ask for JSON)."""
    ranked: dict[str, float] = {}
    for item in request.headers.get("accept", "").split(","):
        kind, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranked[kind.strip().lower()] = quality
    return ranked.get("application/json", 0.0) > ranked.get("text/html", 0.0)


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client is not None else None


def ticked_of_shown(fields: Sequence[tuple[str, str]], shown: str, ticked: str, what: str,
                    key: str) -> tuple[list[str], set[str]]:
    """The values of the form's ``shown`` fields (the ``what`` it listed, in order) and of its ``ticked``
    checkboxes, which may name only listed ones (else ``invalid_preferences``, the others under ``key``)."""
    listed = [v for k, v in fields if k == shown]
    chosen = {v for k, v in fields if k == ticked}
    if not chosen <= set(listed):
        extra = sorted(chosen - set(listed))
        raise ValidationError(f"'{ticked}' names {what} the form did not show: {', '.join(extra)}",
                              code="invalid_preferences", details=[{key: extra}])
    return listed, chosen


def form_fields(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """Fields of a form body, ``application/x-www-form-urlencoded`` or ``multipart/form-data``.

    RFC 8058 lets the one-click POST come in either encoding (it recommends multipart), so both are
    read; files in a multipart body are ignored.
    """
    mime = content_type.partition(";")[0].strip().lower()
    if mime in ("", "application/x-www-form-urlencoded"):
        try:
            return parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        except UnicodeDecodeError:
            raise ValidationError("the form body is not UTF-8", code="invalid_form") from None
        except ValueError:
            raise ValidationError(f"the form has more than {MAX_FORM_FIELDS} fields", code="invalid_form") from None
    if mime == "multipart/form-data":
        head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
        message = BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        if not message.is_multipart():
            raise ValidationError("the multipart form body has no parts (check the boundary)", code="invalid_form")
        out: list[tuple[str, str]] = []
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            raw = part.get_payload(decode=True)
            if not isinstance(name, str) or part.get_filename() is not None or not isinstance(raw, bytes):
                continue
            try:
                out.append((name, raw.decode("utf-8")))
            except UnicodeDecodeError:
                raise ValidationError(f"form field {name!r} is not UTF-8", code="invalid_form") from None
            if len(out) > MAX_FORM_FIELDS:
                raise ValidationError(f"the form has more than {MAX_FORM_FIELDS} fields", code="invalid_form")
        return out
    raise ValidationError(f"unsupported form Content-Type {mime!r}; expected application/x-www-form-urlencoded "
                          "or multipart/form-data", code="invalid_form")


# --- pages -------------------------------------------------------------------------------------------

_STYLE = ("body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}"
          "fieldset{border:1px solid #ccc;border-radius:6px;margin:1rem 0}label{display:block;margin:.6rem 0}"
          "small{color:#666;display:block;margin-left:1.6rem}button{font:inherit;padding:.4rem 1rem}"
          ".notice{background:#eef7ee;padding:.5rem 1rem;border-radius:6px}")


def html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status, headers=PAGE_HEADERS)


def page(title: str, body: str) -> str:
    """A complete document: ``title`` is escaped here, ``body`` must already be escaped HTML."""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
            f"<body><h1>{escape(title)}</h1>{body}</body></html>")


def _label(purpose: Purpose) -> str:
    return purpose.description or purpose.name


def _status(choice: Choice) -> str:
    return _STATUS[choice.decision.reason].format(basis=choice.purpose.legal_basis.replace("_", " "))


def _fieldset(legend: str, shown: Sequence[Choice]) -> str:
    if not shown:
        return ""
    rows = []
    for choice in shown:
        name = escape(choice.purpose.name)
        checked = " checked" if choice.decision.allowed else ""
        rows.append(f'<input type="hidden" name="shown" value="{name}">'
                    f'<label><input type="checkbox" name="granted" value="{name}"{checked}> '
                    f"{escape(_label(choice.purpose))}<small>{escape(_status(choice))}</small></label>")
    return f"<fieldset><legend>{escape(legend)}</legend>{''.join(rows)}</fieldset>"


def _group_fieldset(members: Sequence[Membership]) -> str:
    if not members:
        return ""
    rows = []
    for member in members:
        name = escape(member.group.name)
        checked = " checked" if member.subscribed else ""
        rows.append(f'<input type="hidden" name="group_shown" value="{name}">'
                    f'<label><input type="checkbox" name="group" value="{name}"{checked}> '
                    f"{escape(member.group.description or member.group.name)}"
                    f"<small>{escape(_GROUP_STATUS[member.reason][member.subscribed])}</small></label>")
    return f"<fieldset><legend>Messages you receive</legend>{''.join(rows)}</fieldset>"


_GROUP_STATUS = {
    "default": {True: "On: everyone gets these until they leave", False: "Off: you have not joined"},
    "joined": {True: "On: you joined", False: "On: you joined"},
    "left": {True: "Off: you left", False: "Off: you left"},
}


def preferences_page(action: str, shown: Sequence[Choice], notice: str | None,
                     members: Sequence[Membership] = ()) -> str:
    """The preference center: subscriptions, the subscription groups, then other consents, each a checkbox."""
    body = f'<p class="notice" role="status">{escape(notice)}</p>' if notice else ""
    if not shown and not members:
        body += "<p>There is nothing to choose here.</p>"
    else:
        body += (f'<form method="post" action="{escape(action)}">'
                 f"{_fieldset('Subscriptions', [c for c in shown if c.is_subscription])}"
                 f"{_group_fieldset(members)}"
                 f"{_fieldset('How we may use your data', [c for c in shown if not c.is_subscription])}"
                 '<button type="submit">Save my choices</button></form>')
    return page("Your preferences", body)


def confirm_page(action: str, choice: Choice) -> str:
    """Asks before unsubscribing: a GET must never change anything."""
    label = escape(_label(choice.purpose))
    state = f"<p>Now: {escape(_status(choice))}.</p>"
    form = (f'<form method="post" action="{escape(action)}">'
            f'<input type="hidden" name="{ONE_CLICK[0]}" value="{ONE_CLICK[1]}">'
            '<button type="submit">Unsubscribe</button></form>')
    return page("Unsubscribe", f"<p>Unsubscribe from \u201c{label}\u201d?</p>{state}{form}")


def confirm_group_page(action: str, member: Membership) -> str:
    """Asks before leaving a subscription group: a GET must never change anything."""
    label = escape(member.group.description or member.group.name)
    state = f"<p>Now: {escape(_GROUP_STATUS[member.reason][member.subscribed])}.</p>"
    form = (f'<form method="post" action="{escape(action)}">'
            f'<input type="hidden" name="{ONE_CLICK[0]}" value="{ONE_CLICK[1]}">'
            '<button type="submit">Unsubscribe</button></form>')
    return page("Unsubscribe", f"<p>Stop receiving \u201c{label}\u201d?</p>{state}{form}")


def done_group_page(group: SubscriptionGroup) -> str:
    return page("Unsubscribed", f"<p>Done: you will no longer receive \u201c{escape(group.description or group.name)}"
                                "\u201d.</p>")


def done_page(purpose: Purpose) -> str:
    return page("Unsubscribed", f"<p>Done: \u201c{escape(_label(purpose))}\u201d is now off for you.</p>")


def error_page(exc: UserError) -> str:
    advice = ("Use the link in a more recent message." if isinstance(exc, links.LinkError)
              else "Go back and try again.")
    return page("This link cannot be used", f"<p>{escape(exc.message)}</p><p>{advice}</p>")
