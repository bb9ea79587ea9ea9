"""Secrets: generation and one-way hashing (secrets are never stored in clear)."""

from __future__ import annotations

import hashlib
import secrets

from rapport.workspaces.model import CredentialKind

_PREFIX: dict[CredentialKind, str] = {"write_key": "wk_", "admin_token": "rat_"}


def new_secret(kind: CredentialKind) -> str:
    """A fresh high-entropy secret whose prefix tells its kind."""
    return _PREFIX[kind] + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    """SHA-256 of the secret; 256 random bits make a slow hash unnecessary."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def kind_of(secret: str) -> CredentialKind | None:
    for kind, prefix in _PREFIX.items():
        if secret.startswith(prefix):
            return kind
    return None
