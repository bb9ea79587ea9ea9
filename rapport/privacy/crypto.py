"""Envelope encryption for personal data at rest, and blind indexes for equality lookups.

Three levels of 256-bit AES-GCM keys: the master key wraps each workspace key, a workspace key
wraps each profile's data key, and a data key encrypts that profile's values. Erasing a profile
is then destroying one wrapped data key (crypto-shredding). Every ciphertext is
``version (1 byte) || nonce (12 bytes) || ciphertext || tag (16 bytes)``. The AAD binds a blob to
its place (see ``aad_for``): a wrapped key or value moved to another workspace, profile or field
fails to decrypt instead of decrypting to someone else's data.

Identifiers that must stay searchable (email, phone) are also stored as a blind index: an
HMAC under a lookup key derived from the workspace key, so equal values give equal indexes and
nothing else is revealed.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from rapport.errors import Terminal

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
VERSION = 1
_VERSION_BYTE = bytes([VERSION])
_OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES
LOOKUP_INFO = b"rapport-lookup-v1"
IDENTITY_INFO = b"rapport-identity-verification-v1"


class CryptoError(Terminal):
    """A blob failed authentication (tampered, wrong key or wrong AAD) or a key is malformed."""

    code = "crypto_error"


def generate_key() -> bytes:
    """A fresh random 256-bit key."""
    return os.urandom(KEY_BYTES)


def aad_for(*parts: str) -> bytes:
    """Associated data naming where a blob belongs, e.g. ``aad_for("value", workspace, profile, field)``.

    Parts are joined unambiguously (length-prefixed), so ``("ab", "c")`` and ``("a", "bc")`` differ.
    """
    out = bytearray()
    for part in parts:
        raw = part.encode()
        out += len(raw).to_bytes(4, "big")
        out += raw
    return bytes(out)


def _check_key(key: bytes, what: str) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        size = len(key) if isinstance(key, bytes | bytearray) else type(key).__name__
        raise CryptoError(f"{what} must be {KEY_BYTES} bytes, got {size}", code="invalid_key")


class Cipher:
    """AES-GCM under one key: encrypts and decrypts values (or, as a KEK, other keys)."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        _check_key(key, "an encryption key")
        self._aead = AESGCM(bytes(key))

    def __repr__(self) -> str:
        return "Cipher(key=********)"

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        """``plaintext`` sealed under this key with a fresh random nonce."""
        nonce = os.urandom(NONCE_BYTES)
        return _VERSION_BYTE + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, aad: bytes = b"") -> bytes:
        """The plaintext of ``blob``; raises ``CryptoError`` if it was altered or the key/AAD differ."""
        if len(blob) < _OVERHEAD:
            raise CryptoError(f"ciphertext too short ({len(blob)} bytes)")
        if blob[0] != VERSION:
            raise CryptoError(f"unsupported ciphertext version {blob[0]}; expected {VERSION}")
        try:
            return self._aead.decrypt(blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :], aad)
        except InvalidTag:
            raise CryptoError(
                "ciphertext failed authentication (tampered, wrong key or wrong context)"
            ) from None


def wrap(kek: bytes, key: bytes, aad: bytes) -> bytes:
    """``key`` encrypted under the key-encryption key ``kek``, bound to ``aad``."""
    _check_key(key, "the key to wrap")
    return Cipher(kek).encrypt(bytes(key), aad)


def unwrap(kek: bytes, blob: bytes, aad: bytes) -> bytes:
    """The key inside ``blob``; raises ``CryptoError`` on tampering, wrong ``kek`` or ``aad``."""
    key = Cipher(kek).decrypt(blob, aad)
    _check_key(key, "an unwrapped key")
    return key


def lookup_key(workspace_key: bytes) -> bytes:
    """The workspace's blind-index key, derived so it never equals a key that encrypts data."""
    _check_key(workspace_key, "a workspace key")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=LOOKUP_INFO)
    return hkdf.derive(bytes(workspace_key))


def identity_key(workspace_key: bytes, version: int = 1) -> bytes:
    """Version ``version`` of the workspace's identity-verification secret: the customer's own server signs user ids
    with it (``user_hash``), so a public write key cannot ask for the decisions of a user id it was not given.
    Each version is derived apart (a rotation replaces the secret without changing the workspace key)."""
    _check_key(workspace_key, "a workspace key")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CryptoError(f"identity secret version must be a whole number from 1, not {version!r}",
                          code="invalid_key")
    info = IDENTITY_INFO if version == 1 else IDENTITY_INFO + b"/" + str(version).encode()
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info)
    return hkdf.derive(bytes(workspace_key))


def user_hash(identity_key: bytes, user_id: str) -> str:
    """Hex HMAC-SHA256 of the user id (UTF-8) under the identity-verification secret."""
    _check_key(identity_key, "an identity-verification key")
    return hmac_sha256_hex(identity_key, user_id.encode())


def blind_index(lookup_key: bytes, identifier_type: str, normalized_value: str) -> str:
    """Deterministic hex HMAC-SHA256 of ``identifier_type + "\\x00" + normalized_value``.

    Equal for equal inputs, so it can be indexed and compared; the type is part of the input, so
    the same text as an email and as a user id gives different indexes. Normalize the value
    first (e.g. lower-cased email, E.164 phone).
    """
    _check_key(lookup_key, "a lookup key")
    if "\x00" in identifier_type:
        raise CryptoError("identifier type must not contain NUL", code="invalid_identifier_type")
    message = f"{identifier_type}\x00{normalized_value}".encode()
    return hmac_sha256_hex(lookup_key, message)


_PADS: dict[bytes, tuple[hashlib._Hash, hashlib._Hash]] = {}
"""Per key, SHA-256 states that have absorbed the key's inner and outer pads (bounded: cleared when full)."""
_BLOCK = 64


def hmac_sha256_hex(key: bytes, message: bytes) -> str:
    """Hex HMAC-SHA256 (RFC 2104) of ``message`` under ``key``, equal to ``hmac.new(key, message,
    hashlib.sha256).hexdigest()``. The keyed states are kept per key and copied per call: every decision and
    every ingested identifier computes one, and OpenSSL 3 looks its digest up anew on each ``hmac.new``."""
    pads = _PADS.get(key)
    if pads is None:
        padded = (hashlib.sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK, b"\0")
        pads = (hashlib.sha256(bytes(b ^ 0x36 for b in padded)), hashlib.sha256(bytes(b ^ 0x5C for b in padded)))
        if len(_PADS) >= 1024:
            _PADS.clear()
        _PADS[bytes(key)] = pads
    inner = pads[0].copy()
    inner.update(message)
    outer = pads[1].copy()
    outer.update(inner.digest())
    return outer.hexdigest()
