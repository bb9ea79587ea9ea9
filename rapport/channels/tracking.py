"""Open and click tracking for email: signed tracking tokens and the HTML rewriting that places them.

A token is ``base64url(payload) "." base64url(mac)``, built and checked with the same encoding and MAC
as preference links (``rapport.consent.links``) but under a key derived with its own label, so a
tracking token can never pass as a preference link or the reverse. The payload is the JSON array
``[version, kind, workspace id, send key]`` for an open pixel and ``[version, kind, workspace id, send
key, url]`` for a click: the send key is the message's idempotency key (opaque hex), so a token names
no person and holds nothing personal beyond the link target the message itself contained.

Tokens do not expire: a message kept for years must still open its links. Because the target URL is
covered by the MAC, the click endpoint redirects only to URLs that were in a message Rapport sent
(never an open redirect).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from html import escape, unescape
from html.parser import HTMLParser
from typing import Final, Literal
from urllib.parse import urlsplit

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from rapport.consent.links import LinkError, _b64, _mac, _unb64
from rapport.errors import ValidationError
from rapport.types import WorkspaceId
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import WorkspaceRuntime

TrackingKind = Literal["o", "c"]
OPEN: Final[TrackingKind] = "o"
CLICK: Final[TrackingKind] = "c"
VERSION: Final = 1
MAX_TOKEN_CHARS: Final = 4096
"""Longer than any token of a sensible URL; keeps a forged token from costing more than a glance."""
MAX_URL_CHARS: Final = 2048
TRACKING_KEY_INFO: Final = b"rapport-email-tracking-v1"
"""HKDF label: the tracking key never equals the preference-link key or any other workspace key."""
_KEY_SEED: Final = ("key:email-tracking", "v1")
UNTRACKED_PATHS: Final = ("/unsubscribe/", "/preferences/")
"""Rapport's own per-person links (``rapport.consent.links``): a tracking redirect in front of them would
break one-click unsubscribe and count a person leaving as engagement."""
PIXEL_STYLE: Final = "display:block;border:0;width:1px;height:1px;overflow:hidden"


class TrackingError(ValidationError):
    """A tracking token that is not one this server signed (malformed, altered, or for another workspace)."""

    code = "invalid_tracking_token"


@dataclass(frozen=True, slots=True)
class TrackingClaims:
    """What an authentic token says: which workspace's message it belongs to and, for a click, where to go."""

    kind: TrackingKind
    workspace_id: WorkspaceId
    send_key: str
    url: str | None = None


def derive_tracking_key(secret: bytes) -> bytes:
    """The 32-byte tracking key derived from workspace key material (HKDF-SHA256, own label)."""
    if len(secret) < 32:
        raise ValueError(f"tracking key material must be at least 32 bytes, got {len(secret)}")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=TRACKING_KEY_INFO).derive(secret)


def tracking_key(keyring: Keyring, ws: WorkspaceRuntime) -> bytes:
    """The workspace's tracking key: derived as ``rapport.consent.links.link_key`` derives the link key,
    from the workspace's keyed hash of a label of its own."""
    seed = keyring.blind_index(ws.id, ws.wrapped_key, *_KEY_SEED)
    return derive_tracking_key(bytes.fromhex(seed) + ws.id.encode())


def is_web_url(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc) and not any(
        c in url for c in "\r\n\t\x00")


def _sign(key: bytes, payload: list[object]) -> str:
    encoded = _b64(orjson.dumps(payload))
    return f"{encoded}.{_b64(_mac(key, encoded))}"


def open_token(key: bytes, ws: WorkspaceId, send_key: str) -> str:
    """The token of the open pixel of the message with idempotency key ``send_key``."""
    return _sign(key, [VERSION, OPEN, ws, send_key])


def click_token(key: bytes, ws: WorkspaceId, send_key: str, url: str) -> str:
    """The token of a tracked link to ``url`` in the message with idempotency key ``send_key``.

    Raises ``ValidationError`` unless ``url`` is an absolute http(s) URL of at most ``MAX_URL_CHARS``.
    """
    if not is_web_url(url) or len(url) > MAX_URL_CHARS:
        raise ValidationError(f"a tracked link must be an absolute http(s) URL of at most {MAX_URL_CHARS} "
                              f"characters, got {url[:100]!r}", code="invalid_tracked_url")
    return _sign(key, [VERSION, CLICK, ws, send_key, url])


def _decode(token: str) -> tuple[TrackingClaims, str, bytes]:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise TrackingError(f"the tracking token is missing or longer than {MAX_TOKEN_CHARS} characters")
    encoded, dot, mac_text = token.partition(".")
    if not dot or "." in mac_text:
        raise TrackingError("the tracking token must have two parts separated by '.'")
    try:
        payload, mac = _unb64(encoded, "payload"), _unb64(mac_text, "signature")
    except LinkError as exc:
        raise TrackingError(exc.message.replace("link", "tracking token"), details=exc.details) from None
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise TrackingError("the tracking token's payload is not JSON") from None
    if not isinstance(data, list) or len(data) < 4 or data[0] != VERSION or data[1] not in (OPEN, CLICK):
        raise TrackingError(f"the tracking token's payload is not a version-{VERSION} tracking token")
    kind, ws, send_key = data[1], data[2], data[3]
    if not (isinstance(ws, str) and ws and isinstance(send_key, str) and send_key):
        raise TrackingError("the tracking token's payload lacks a workspace or send key")
    if kind == OPEN:
        if len(data) != 4:
            raise TrackingError("an open token carries no URL")
        return TrackingClaims(OPEN, WorkspaceId(ws), send_key), encoded, mac
    url = data[4] if len(data) == 5 else None
    if not isinstance(url, str) or not is_web_url(url):
        raise TrackingError("a click token carries exactly one absolute http(s) URL")
    return TrackingClaims(CLICK, WorkspaceId(ws), send_key, url), encoded, mac


def verify(token: str, kind: TrackingKind, key_for: Callable[[WorkspaceId], bytes | None]) -> TrackingClaims:
    """The claims of an authentic ``token`` of ``kind``; raises ``TrackingError`` otherwise.

    ``key_for`` gives the tracking key of the workspace the token names, or ``None`` for a workspace that
    does not exist (refused like a bad MAC, so workspace ids cannot be probed).
    """
    claims, encoded, mac = _decode(token)
    if claims.kind != kind:
        raise TrackingError("the tracking token is of the wrong kind for this address")
    key = key_for(claims.workspace_id)
    if key is None or not hmac.compare_digest(mac, _mac(key, encoded)):
        raise TrackingError("the tracking token's signature does not match; it was altered or is not from "
                            "this server", code="invalid_tracking_signature")
    return claims


def url_hash(url: str) -> str:
    """The SHA-256 hex of a tracked URL: how a click's target is keyed in storage."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class TrackingUrls:
    """The tracking addresses of one message: its open pixel and a click URL for each link."""

    open_url: str
    click_url_for: Callable[[str], str]


def tracking_urls(base_url: str, ws: WorkspaceRuntime, send_key: str, *, keyring: Keyring) -> TrackingUrls:
    """The open pixel and click URLs, under the server's public ``base_url``, of the message with idempotency
    key ``send_key``; pass them to ``instrument_html``."""
    if not is_web_url(base_url):
        raise ValidationError(f"the tracking base URL must start with https:// (or http://), got {base_url!r}",
                              code="invalid_link_base")
    root = base_url.rstrip("/")
    key = tracking_key(keyring, ws)

    def click_url_for(url: str) -> str:
        return f"{root}/t/c/{click_token(key, ws.id, send_key, url)}"

    return TrackingUrls(f"{root}/t/o/{open_token(key, ws.id, send_key)}", click_url_for)


# --- HTML --------------------------------------------------------------------------------------------------

_ATTRIBUTE = re.compile(r"""[\s/]*([^\s/>"'=][^\s/>"'=]*)(\s*=\s*("[^"]*"|'[^']*'|[^\s>]*))?""")
"""One attribute of a start tag as the HTML tokenizer reads it: a name, then an optional value (quoted or not)."""


def _href_span(raw: str) -> tuple[int, int] | None:
    """Where the value (quotes included) of the first ``href`` attribute of start tag ``raw`` is."""
    at = 2  # past "<a"
    while (found := _ATTRIBUTE.match(raw, at)) is not None and found.end() > at:
        if found.group(1).lower() == "href":
            return None if found.group(3) is None else found.span(3)
        at = found.end()
    return None


class _Scanner(HTMLParser):
    """Finds ``<a href>`` start tags and the last ``</body>`` with their offsets in the source text.

    ``html.parser`` knows comments, ``<script>``/``<style>`` content and attribute quoting, so a link
    inside a comment or a script string is left alone, as a browser would ignore it.
    """

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        # html.parser counts lines by "\n" alone, as this does.
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.links: list[tuple[int, str, str]] = []
        """(offset of the start tag, its raw text, the decoded href) of each link."""
        self.body_end: int | None = None

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":
            return
        hrefs = [value for name, value in attrs if name == "href"]
        raw = self.get_starttag_text()
        if len(hrefs) == 1 and hrefs[0] is not None and raw is not None:
            self.links.append((self._offset(), raw, hrefs[0]))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self._offset()


def _attribute_value(text: str) -> str:
    """The value an attribute's source text (quoted or not) stands for."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    return unescape(text)


def tracked(href: str, keep: Collection[str] = ()) -> bool:
    """Whether a link to ``href`` gets a click-tracking URL: absolute http(s), not one of ``keep``, not one
    of Rapport's own preference or unsubscribe links."""
    url = href.strip()
    if url in keep or not is_web_url(url) or len(url) > MAX_URL_CHARS:
        return False
    path = urlsplit(url).path
    return not any(part in path for part in UNTRACKED_PATHS)


def pixel(open_url: str) -> str:
    """The 1x1 open-tracking image for ``open_url``."""
    return (f'<img src="{escape(open_url, quote=True)}" width="1" height="1" alt="" border="0" '
            f'style="{PIXEL_STYLE}">')


def instrument_html(html: str, open_url: str, click_url_for: Callable[[str], str], *,
                    keep: Collection[str] = ()) -> str:
    """``html`` with the ``href`` of each tracked ``<a>`` (see ``tracked``) replaced by
    ``click_url_for(original URL)`` and the open pixel for ``open_url`` placed before the last ``</body>``
    (at the end when there is none). Everything else is left byte for byte as it was.

    ``keep`` lists URLs to leave as they are, such as the message's unsubscribe URL.
    """
    scanner = _Scanner(html)
    scanner.feed(html)
    scanner.close()
    edits: list[tuple[int, int, str]] = []
    for offset, raw, href in scanner.links:
        url = href.strip()
        if not tracked(url, keep) or html[offset:offset + len(raw)] != raw:
            continue
        span = _href_span(raw)
        if span is None or _attribute_value(raw[span[0]:span[1]]) != href:
            continue  # the tag reads differently than the parser read it: leave it as it is
        new_tag = f'{raw[:span[0]]}"{escape(click_url_for(url), quote=True)}"{raw[span[1]:]}'
        edits.append((offset, offset + len(raw), new_tag))
    at = scanner.body_end if scanner.body_end is not None else len(html)
    edits.append((at, at, pixel(open_url)))
    out, cursor = [], 0
    for start, end, text in sorted(edits, key=lambda e: (e[0], e[1])):
        out.append(html[cursor:start])
        out.append(text)
        cursor = end
    out.append(html[cursor:])
    return "".join(out)
