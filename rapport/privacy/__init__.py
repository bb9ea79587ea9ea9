"""Privacy: encryption of personal data at rest, blind indexes, and the master key's source."""

from __future__ import annotations

from rapport.privacy.crypto import (
    Cipher,
    CryptoError,
    aad_for,
    blind_index,
    generate_key,
    lookup_key,
    unwrap,
    wrap,
)
from rapport.privacy.keyfile import load_or_create_master_key
from rapport.privacy.pii import (
    DEFAULT_PII_FIELDS,
    MARKER,
    contains_marker,
    decrypt_fields,
    decrypt_value,
    encrypt_event,
    encrypt_fields,
    encrypt_value,
    is_marker,
)

__all__ = [
    "DEFAULT_PII_FIELDS",
    "MARKER",
    "Cipher",
    "CryptoError",
    "aad_for",
    "blind_index",
    "contains_marker",
    "decrypt_fields",
    "decrypt_value",
    "encrypt_event",
    "encrypt_fields",
    "encrypt_value",
    "generate_key",
    "is_marker",
    "load_or_create_master_key",
    "lookup_key",
    "unwrap",
    "wrap",
]
