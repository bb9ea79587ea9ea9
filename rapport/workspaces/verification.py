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

from rapport.errors import ForbiddenError
from rapport.privacy import crypto
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import WorkspaceRuntime


def secret(keyring: Keyring, rt: WorkspaceRuntime) -> bytes:
    """The workspace's identity-verification secret."""
    return keyring.identity_key(rt.id, rt.wrapped_key)


def verified(keyring: Keyring, rt: WorkspaceRuntime, user_id: str, user_hash: str | None) -> bool:
    """Whether ``user_hash`` proves ``user_id``, or the workspace does not ask for proof."""
    if not rt.settings.identity_verification:
        return True
    if not user_hash:
        return False
    return hmac.compare_digest(crypto.user_hash(secret(keyring, rt), user_id), user_hash.strip().lower())


def refused(how: str) -> ForbiddenError:
    """The error for a user id named without its proof; ``how`` says where the proof goes."""
    return ForbiddenError(
        f"a write key names a person by user id only with {how}: the hex HMAC-SHA256 of the user id under the"
        " workspace's identity-verification secret, computed by your server (`rapport workspace identity-secret`);"
        " or name the browser's anonymous id", code="identity_not_verified", details=[{"field": "user_hash"}])
