"""Signed per-person links to the preference center and the one-click unsubscribe endpoint.

A link is the person's only credential there, so it must be unforgeable and carry nothing
personal: the token is ``base64url(payload) "." base64url(mac)`` where the payload is the JSON
array ``[version, workspace id, profile id, issued at (epoch ms), scope]`` (``scope`` is ``"*"``
for every purpose, or a sorted list of purpose names) and the MAC is HMAC-SHA256 over the encoded
payload text under a key derived from the workspace key. Ids are opaque, so a forwarded or
logged link reveals no email, name or phone. The MAC covers the encoded text itself, so any change
to any character is refused, and a token made with one workspace's key cannot act in another.

Verification checks the form first, then the signature, and only then the age: an expired link is
reported as such only when it is authentic, so a forger learns nothing from the error code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from rapport.clock import to_iso
from rapport.consent.model import NECESSARY
from rapport.errors import UserError, ValidationError
from rapport.types import DAY, MINUTE, Millis, ProfileId, WorkspaceId
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import WorkspaceRuntime

VERSION = 1
ALL = "*"
"""The scope of a link that may view and change every purpose (the preference center's)."""
MAX_AGE: Millis = 400 * DAY
"""How long a link works by default: longer than any mail client keeps a message in view, and well
over the 30 days after sending for which unsubscribe links must keep working (CAN-SPAM)."""
CLOCK_SKEW: Millis = 5 * MINUTE
"""Tolerance for a link issued by a server whose clock runs a little ahead of this one."""
MAX_TOKEN_CHARS = 2048
LINK_KEY_INFO = b"rapport-preference-link-v1"
"""HKDF label: the link key never equals a key that encrypts data or indexes identifiers."""
_KEY_SEED = ("key:preference-link", "v1")
_MAC_CONTEXT = b"rapport.link.v1\x00"
_B64 = re.compile(r"^[A-Za-z0-9_-]+$")


class LinkError(UserError):
    """A preference or unsubscribe link that cannot be honoured (403, or 410 when it is gone for good)."""

    code = "invalid_link"
    status = 403


class MalformedLink(LinkError):
    """The token is not one Rapport makes: wrong shape, encoding or payload."""

    code = "malformed_link"


class BadSignature(LinkError):
    """The token is well formed but its MAC does not match (tampered, or signed for another workspace)."""

    code = "invalid_link_signature"


class LinkGone(LinkError):
    """An authentic link that will never work again (the person was erased): 410 Gone."""

    code = "link_gone"
    status = 410


class ExpiredLink(LinkGone):
    """An authentic token older than the allowed age."""

    code = "link_expired"


@dataclass(frozen=True, slots=True)
class LinkClaims:
    """What an authentic token says: whose link it is, when it was issued, which purposes it covers."""

    workspace_id: WorkspaceId
    profile_id: ProfileId
    issued_at: Millis
    scope: str | tuple[str, ...] = ALL

    def covers(self, purpose: str) -> bool:
        """Whether the link may view and change ``purpose``."""
        return self.scope == ALL or purpose in self.scope


def derive_link_key(secret: bytes) -> bytes:
    """The 32-byte link-signing key derived from workspace key material (HKDF-SHA256, own label)."""
    if len(secret) < 32:
        raise ValueError(f"link key material must be at least 32 bytes, got {len(secret)}")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=LINK_KEY_INFO).derive(secret)


def link_key(keyring: Keyring, ws: WorkspaceRuntime) -> bytes:
    """The workspace's link-signing key.

    The keyring exposes workspace-key-derived secrets only as keyed hashes, so the key material is
    the workspace's keyed hash of a fixed label no identifier type uses (as sealed series use
    ``series:<id>``); HKDF with the link label then separates it from every other use of that hash.
    """
    seed = keyring.blind_index(ws.id, ws.wrapped_key, *_KEY_SEED)
    return derive_link_key(bytes.fromhex(seed) + ws.id.encode())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str, part: str) -> bytes:
    if not _B64.match(text):
        raise MalformedLink(f"the link's {part} is not base64url text", details=[{"part": part}])
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedLink(f"the link's {part} is not valid base64url", details=[{"part": part}]) from None
    # Unused low bits of the last character would let several texts decode alike; only the one
    # canonical text is accepted, so a token has exactly one spelling.
    if _b64(raw) != text:
        raise MalformedLink(f"the link's {part} is not canonical base64url", details=[{"part": part}])
    return raw


def _mac(key: bytes, encoded_payload: str) -> bytes:
    return hmac.new(key, _MAC_CONTEXT + encoded_payload.encode("ascii"), hashlib.sha256).digest()


def _scope_json(scope: str | Sequence[str]) -> str | list[str]:
    if scope == ALL:
        return ALL
    if isinstance(scope, str):
        raise ValidationError(f"a link scope is {ALL!r} or a list of purpose names, got {scope!r}",
                              code="invalid_link_scope")
    names = sorted(set(scope))
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValidationError(f"a link scope lists at least one purpose name, got {list(scope)!r}",
                              code="invalid_link_scope")
    return names


def make_token(key: bytes, ws: WorkspaceId, profile_id: ProfileId, at: Millis,
               scope: str | Sequence[str] = ALL) -> str:
    """A signed token for ``profile_id`` of workspace ``ws``, issued at ``at``, covering ``scope``."""
    payload = _b64(orjson.dumps([VERSION, ws, profile_id, at, _scope_json(scope)]))
    return f"{payload}.{_b64(_mac(key, payload))}"


def make_link(base_url: str, ws: WorkspaceRuntime, profile_id: str, at: Millis, *, keyring: Keyring,
              purpose: str | None = None) -> str:
    """The person's preference-center URL or, with ``purpose``, their one-click unsubscribe URL for it.

    The unsubscribe link's token covers that purpose only, so it cannot change anything else; put it
    in ``List-Unsubscribe`` beside ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058).
    """
    if not base_url.startswith(("https://", "http://")):
        raise ValidationError(f"the link base URL must start with https:// (or http://), got {base_url!r}",
                              code="invalid_link_base")
    root = base_url.rstrip("/")
    key = link_key(keyring, ws)
    if purpose is None:
        return f"{root}/preferences/{make_token(key, ws.id, ProfileId(profile_id), at)}"
    found = ws.catalog.get(purpose)
    if found.name == NECESSARY:
        raise ValidationError(f"{NECESSARY!r} is always allowed; there is nothing to unsubscribe from",
                              code="invalid_link_scope")
    token = make_token(key, ws.id, ProfileId(profile_id), at, (found.name,))
    return f"{root}/unsubscribe/{token}?purpose={quote(found.name)}"


def peek(token: str) -> LinkClaims:
    """The claims of ``token`` without checking its signature (to find the workspace whose key checks it).

    Raises ``MalformedLink`` for anything that is not a token of this version.
    """
    return _decode(token)[0]


def _decode(token: str) -> tuple[LinkClaims, str, bytes]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise MalformedLink(f"the link token is missing or longer than {MAX_TOKEN_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 2:
        raise MalformedLink("the link token must have two parts separated by '.'",
                            details=[{"parts": len(parts)}])
    encoded, mac_text = parts
    payload = _unb64(encoded, "payload")
    mac = _unb64(mac_text, "signature")
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise MalformedLink("the link's payload is not JSON") from None
    if not isinstance(data, list) or len(data) != 5 or data[0] != VERSION:
        raise MalformedLink(f"the link's payload is not a version-{VERSION} link")
    _, ws, pid, issued, scope = data
    if not (isinstance(ws, str) and ws and isinstance(pid, str) and pid):
        raise MalformedLink("the link's payload lacks a workspace or profile id")
    if isinstance(issued, bool) or not isinstance(issued, int) or issued < 0:
        raise MalformedLink("the link's issue time is not epoch milliseconds")
    if scope == ALL:
        claimed: str | tuple[str, ...] = ALL
    elif isinstance(scope, list) and scope and all(isinstance(s, str) and s for s in scope):
        claimed = tuple(scope)
    else:
        raise MalformedLink(f"the link's scope must be {ALL!r} or a list of purpose names")
    return LinkClaims(WorkspaceId(ws), ProfileId(pid), issued, claimed), encoded, mac


def verify(token: str, now: Millis, max_age: Millis,
           key_for: Callable[[WorkspaceId], bytes | None]) -> LinkClaims:
    """The claims of an authentic, unexpired ``token``.

    ``key_for`` gives the link key of the workspace the token names, or ``None`` for a workspace
    that does not exist (reported as a bad signature, so ids cannot be probed). Raises
    ``MalformedLink``, ``BadSignature``, ``LinkError`` (``link_not_yet_valid``) or ``ExpiredLink``.
    """
    claims, encoded, mac = _decode(token)
    key = key_for(claims.workspace_id)
    if key is None or not hmac.compare_digest(mac, _mac(key, encoded)):
        raise BadSignature("the link's signature does not match; it was altered or is not from this server")
    if claims.issued_at > now + CLOCK_SKEW:
        raise LinkError(f"the link is issued in the future ({to_iso(claims.issued_at)})", code="link_not_yet_valid")
    if now - claims.issued_at > max_age:
        raise ExpiredLink(
            f"the link was issued {to_iso(claims.issued_at)} and expired after {max_age // DAY} days; "
            "use the link in a more recent message",
            details=[{"issued_at": to_iso(claims.issued_at), "max_age_days": max_age // DAY}],
        )
    return claims


def link_proof(claims: LinkClaims, ip: str | None, user_agent: str | None) -> str:
    """Provenance for a ledger entry made through a link: when the link was issued and a one-way
    hash of the client that used it (never the raw IP or user agent)."""
    client = hashlib.sha256(f"{ip}\x00{user_agent}".encode()).hexdigest()
    return f"link_issued_at={to_iso(claims.issued_at)};client=sha256:{client}"
