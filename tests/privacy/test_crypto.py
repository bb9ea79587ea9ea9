"""AES-GCM envelope encryption, tamper detection, and blind indexes."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapport.errors import Terminal
from rapport.privacy import Cipher, CryptoError, aad_for, blind_index, generate_key, lookup_key, unwrap, wrap
from rapport.privacy.crypto import hmac_sha256_hex

KEY = bytes(range(32))


def test_generate_key() -> None:
    a, b = generate_key(), generate_key()
    assert len(a) == len(b) == 32
    assert a != b


def test_cipher_round_trip_and_format() -> None:
    cipher = Cipher(generate_key())
    blob = cipher.encrypt(b"ada@example.com", b"ctx")
    assert blob[0] == 1
    assert len(blob) == 1 + 12 + len(b"ada@example.com") + 16
    assert b"ada@example.com" not in blob
    assert cipher.decrypt(blob, b"ctx") == b"ada@example.com"
    assert cipher.decrypt(cipher.encrypt(b"")) == b""


def test_nonces_are_fresh() -> None:
    cipher = Cipher(KEY)
    assert cipher.encrypt(b"same") != cipher.encrypt(b"same")


@pytest.mark.parametrize("position", [0, 1, 12, 13, 20, -1], ids=lambda p: f"byte-{p}")
def test_flipped_byte_is_detected(position: int) -> None:
    cipher = Cipher(KEY)
    blob = bytearray(cipher.encrypt(b"ada@example.com", b"ctx"))
    blob[position] ^= 0x01
    with pytest.raises(CryptoError):
        cipher.decrypt(bytes(blob), b"ctx")


def test_wrong_aad_wrong_key_and_truncation_fail() -> None:
    cipher = Cipher(KEY)
    blob = cipher.encrypt(b"secret", b"profile-1")
    with pytest.raises(CryptoError):
        cipher.decrypt(blob, b"profile-2")
    with pytest.raises(CryptoError):
        cipher.decrypt(blob)
    with pytest.raises(CryptoError):
        Cipher(generate_key()).decrypt(blob, b"profile-1")
    with pytest.raises(CryptoError):
        cipher.decrypt(blob[:20], b"profile-1")


def test_crypto_error_is_terminal() -> None:
    assert issubclass(CryptoError, Terminal)
    assert CryptoError("x").code == "crypto_error"


@pytest.mark.parametrize("bad", [b"", b"short", bytes(31), bytes(33)], ids=len)
def test_keys_must_be_32_bytes(bad: bytes) -> None:
    with pytest.raises(CryptoError) as info:
        Cipher(bad)
    assert info.value.code == "invalid_key"
    with pytest.raises(CryptoError):
        wrap(KEY, bad, b"")


def test_cipher_repr_hides_the_key() -> None:
    assert KEY.hex() not in repr(Cipher(KEY))


def test_envelope_round_trip() -> None:
    master = generate_key()
    workspace_key, data_key = generate_key(), generate_key()
    ws_aad = aad_for("workspace-key", "ws_1")
    profile_aad = aad_for("data-key", "ws_1", "p_1")
    wrapped_ws = wrap(master, workspace_key, ws_aad)
    wrapped_data = wrap(workspace_key, data_key, profile_aad)

    ws = unwrap(master, wrapped_ws, ws_aad)
    data = unwrap(ws, wrapped_data, profile_aad)
    value_aad = aad_for("value", "ws_1", "p_1", "email")
    blob = Cipher(data).encrypt(b"ada@example.com", value_aad)
    assert Cipher(unwrap(ws, wrapped_data, profile_aad)).decrypt(blob, value_aad) == b"ada@example.com"


def test_unwrap_detects_tamper_and_misplacement() -> None:
    kek, key = generate_key(), generate_key()
    blob = wrap(kek, key, aad_for("data-key", "ws_1", "p_1"))
    with pytest.raises(CryptoError):
        unwrap(kek, blob, aad_for("data-key", "ws_1", "p_2"))
    with pytest.raises(CryptoError):
        unwrap(generate_key(), blob, aad_for("data-key", "ws_1", "p_1"))
    tampered = blob[:-1] + bytes([blob[-1] ^ 0x80])
    with pytest.raises(CryptoError):
        unwrap(kek, tampered, aad_for("data-key", "ws_1", "p_1"))


def test_aad_parts_are_unambiguous() -> None:
    assert aad_for("ab", "c") != aad_for("a", "bc")
    assert aad_for("a", "") != aad_for("a")


def _hkdf_sha256(ikm: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(bytes(32), ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def test_lookup_key_is_hkdf_of_the_workspace_key() -> None:
    derived = lookup_key(KEY)
    assert derived == _hkdf_sha256(KEY, b"rapport-lookup-v1", 32)
    assert derived.hex() == "53083098a79193ad4380a3e433c9040c35f8264538c5e8f7110df5a99696e174"
    assert derived != KEY
    assert lookup_key(generate_key()) != derived


def test_blind_index_is_stable() -> None:
    # Stored indexes depend on this exact value: changing it breaks every existing lookup.
    index = blind_index(lookup_key(KEY), "email", "ada@example.com")
    assert index == "ad0856226307b530823f4925e6fb03746f6dcb21c9de4b19d37c56689d43a3fa"
    expected = hmac.new(lookup_key(KEY), b"email\x00ada@example.com", hashlib.sha256).hexdigest()
    assert index == expected


def test_blind_index_is_deterministic_and_type_separated() -> None:
    key = lookup_key(generate_key())
    assert blind_index(key, "email", "ada@example.com") == blind_index(key, "email", "ada@example.com")
    assert blind_index(key, "email", "ada@example.com") != blind_index(key, "user_id", "ada@example.com")
    assert blind_index(key, "email", "ada@example.com") != blind_index(key, "email", "bob@example.com")
    other = lookup_key(generate_key())
    assert blind_index(key, "phone", "+441234") != blind_index(other, "phone", "+441234")


def test_blind_index_rejects_nul_in_type() -> None:
    with pytest.raises(CryptoError):
        blind_index(lookup_key(KEY), "a\x00b", "c")


@given(key=st.binary(min_size=1, max_size=200), message=st.binary(max_size=300))
def test_hmac_from_kept_pads_equals_the_standard_library(key: bytes, message: bytes) -> None:
    # Keys longer than the 64-byte block are hashed first; the pads are kept per key and copied per call.
    expected = hmac.new(key, message, hashlib.sha256).hexdigest()
    assert hmac_sha256_hex(key, message) == expected
    assert hmac_sha256_hex(key, message) == expected
