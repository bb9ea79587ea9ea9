"""Identity verification: proof that a public caller (a browser or app holding the write key) was given the user id
it names.

The customer's own server, where the user has signed in, computes ``user_hash = hex(HMAC-SHA256(secret, user_id))``
under the workspace's identity-verification secret (``crypto.identity_key``, derived from the workspace key) and
hands it to the page or app with the user id. Reads that return a person's content to a write key (decisions, the
in-app inbox) ask for it whenever they are named by ``user_id`` and the workspace setting
``identity_verification`` is on (the default). An ``anonymous_id`` needs none: it is random and held by the
browser.
"""

from __future__ import annotations

import hmac

from rapport.clock import to_iso
from rapport.durations import parse_duration
from rapport.errors import ForbiddenError, ValidationError
from rapport.privacy import crypto
from rapport.storage.base import Conn
from rapport.storage.sql import workspaces as ws_sql
from rapport.types import JsonObject, Millis
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import WorkspaceRuntime


def secret(keyring: Keyring, rt: WorkspaceRuntime) -> bytes:
    """The workspace's current identity-verification secret."""
    return keyring.identity_key(rt.id, rt.wrapped_key, rt.identity_version)


def verified(keyring: Keyring, rt: WorkspaceRuntime, user_id: str, user_hash: str | None, now: Millis) -> bool:
    """Whether ``user_hash`` proves ``user_id`` at ``now`` (under the current secret or, until a rotation's end,
    the previous one), or the workspace does not ask for proof."""
    if not rt.settings.identity_verification:
        return True
    if not user_hash:
        return False
    given = user_hash.strip().lower()
    if hmac.compare_digest(crypto.user_hash(secret(keyring, rt), user_id), given):
        return True
    until = rt.identity_previous_until
    if until is None or now >= until or rt.identity_version < 2:
        return False
    previous = keyring.identity_key(rt.id, rt.wrapped_key, rt.identity_version - 1)
    return hmac.compare_digest(crypto.user_hash(previous, user_id), given)


ROTATION_GRACE_MS = 24 * 3_600_000
"""How long a rotated-out secret's hashes are still accepted by default: the time to deploy the new one."""
MAX_ROTATION_GRACE_MS = 30 * 24 * 3_600_000


def grace_of(text: object) -> Millis:
    """A rotation's grace period from its text: a duration such as ``24h`` (at most 30 days), ``0`` to refuse the
    old secret's hashes at once (after a leak), or ``None`` for the default (``ROTATION_GRACE_MS``)."""
    if text is None:
        return ROTATION_GRACE_MS
    if text in ("0", 0) and not isinstance(text, bool):
        return 0
    if not isinstance(text, str):
        raise ValidationError("'grace' must be a duration such as '24h', or '0'", code="invalid_request",
                              details=[{"field": "grace"}])
    grace = parse_duration(text)
    if grace > MAX_ROTATION_GRACE_MS:
        raise ValidationError("'grace' must be at most 30 days", code="invalid_request", details=[{"field": "grace"}])
    return grace


def rotate(conn: Conn, rt: WorkspaceRuntime, now: Millis, grace_ms: Millis, actor: str) -> None:
    """Replace the workspace's identity-verification secret by the next version, still accepting the current one's
    hashes for ``grace_ms`` (``grace_of``), and audit it as done by ``actor``. The caller invalidates the
    workspace's runtime."""
    until = now + grace_ms
    version = ws_sql.rotate_identity(conn, rt.id, until)
    ws_sql.audit(conn, rt.id, actor, "settings.identity_secret.rotate", rt.id,
                 {"version": version, "previous_accepted_until": to_iso(until)}, now)


def described(keyring: Keyring, rt: WorkspaceRuntime, now: Millis) -> JsonObject:
    """The current secret as the admin API and CLI show it."""
    until = rt.identity_previous_until
    return {"identity_secret": secret(keyring, rt).hex(), "version": rt.identity_version, "algorithm": "HMAC-SHA256",
            "user_hash": "hex HMAC-SHA256 of the UTF-8 user id under the secret (hex-decoded)",
            "required": rt.settings.identity_verification,
            "previous_accepted_until": to_iso(until) if until is not None and until > now else None}


def refused(how: str) -> ForbiddenError:
    """The error for a user id named without its proof; ``how`` says where the proof goes."""
    return ForbiddenError(
        f"a write key names a person by user id only with {how}: the hex HMAC-SHA256 of the user id under the"
        " workspace's identity-verification secret, computed by your server (`rapport workspace identity-secret`);"
        " or name the browser's anonymous id", code="identity_not_verified", details=[{"field": "user_hash"}])
