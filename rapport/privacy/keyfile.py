"""The master key's source: an explicit base64 setting, or a key file created on first use."""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
from pathlib import Path

from rapport.privacy.crypto import KEY_BYTES, CryptoError, generate_key

KEY_FILE_MODE = 0o600


def decode_master_key(text: str, where: str) -> bytes:
    """The 32-byte key in base64 ``text``; raises ``CryptoError`` naming ``where`` it came from."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError(
            f"master key from {where} is not valid base64; expected base64 of {KEY_BYTES} random bytes",
            code="invalid_master_key",
        ) from None
    if len(key) != KEY_BYTES:
        raise CryptoError(
            f"master key from {where} is {len(key)} bytes; expected base64 of {KEY_BYTES} bytes",
            code="invalid_master_key",
        )
    return key


def encode_master_key(key: bytes) -> str:
    """The base64 text form of a master key, as stored in the key file and in settings."""
    return base64.b64encode(key).decode("ascii")


def load_or_create_master_key(path: Path, explicit_b64: str | None) -> bytes:
    """The master key: ``explicit_b64`` if given, else the key file at ``path``, else a new one.

    A blank ``explicit_b64`` counts as absent. A new key is written to ``path`` (parents
    created) with mode 0600; if another process creates the file first, its key is used, so
    concurrent first starts agree on one key. An existing file is never overwritten: losing the
    master key loses every encrypted value.
    """
    if explicit_b64 is not None and explicit_b64.strip():
        return decode_master_key(explicit_b64, "the explicit setting")
    if path.exists():
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    if _create_exclusive(path, (encode_master_key(key) + "\n").encode("ascii")):
        return key
    return _read(path)


def _read(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise CryptoError(
            f"cannot read master key file {str(path)!r}: {exc}", code="invalid_master_key"
        ) from None
    return decode_master_key(text, f"file {str(path)!r}")


def _create_exclusive(path: Path, content: bytes) -> bool:
    """Write ``content`` to a new file at ``path`` atomically; ``False`` if ``path`` already exists.

    The content goes to a private temporary file first and is then hard-linked into place, so no
    reader ever sees a partly written key and a concurrent creator's file is never replaced.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            _private(f.fileno())
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            return _create_direct(path, content)
        _fsync_dir(path.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _create_direct(path: Path, content: bytes) -> bool:
    """Exclusive create in place, for file systems without hard links."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        _private(f.fileno())
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(path.parent)
    return True


def _private(fd: int) -> None:
    # os.open's mode is filtered by the umask; set it exactly (where the platform has modes).
    if hasattr(os, "fchmod"):
        os.fchmod(fd, KEY_FILE_MODE)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
