"""The master key: explicit setting, key file created once with mode 0600, never overwritten."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from rapport.privacy import CryptoError, generate_key, keyfile, load_or_create_master_key


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_explicit_key_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text(b64(generate_key()))
    explicit = generate_key()
    assert load_or_create_master_key(path, b64(explicit)) == explicit
    assert load_or_create_master_key(tmp_path / "absent.key", f"  {b64(explicit)}\n") == explicit
    assert not (tmp_path / "absent.key").exists()


@pytest.mark.parametrize("bad", ["not base64!", b64(bytes(16)), b64(bytes(33))], ids=["garbage", "16", "33"])
def test_invalid_explicit_key(tmp_path: Path, bad: str) -> None:
    with pytest.raises(CryptoError) as info:
        load_or_create_master_key(tmp_path / "master.key", bad)
    assert info.value.code == "invalid_master_key"
    assert "32" in info.value.message


def test_creates_the_file_with_private_mode_and_parents(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "master.key"
    key = load_or_create_master_key(path, None)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert base64.b64decode(path.read_text().strip()) == key
    assert load_or_create_master_key(path, None) == key
    assert load_or_create_master_key(path, "   ") == key
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]


def test_mode_is_exactly_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o277)
    try:
        path = tmp_path / "master.key"
        load_or_create_master_key(path, None)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_corrupt_file_is_an_error_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text("short")
    with pytest.raises(CryptoError) as info:
        load_or_create_master_key(path, None)
    assert str(path) in info.value.message
    assert path.read_text() == "short"


def test_exclusive_create_never_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(b"first")
    assert not keyfile._create_exclusive(path, b"second")
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]


def test_lost_race_uses_the_winners_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "master.key"
    winner = generate_key()
    real_link = os.link

    def link_after_rival(src: str | Path, dst: str | Path) -> None:
        Path(dst).write_text(b64(winner))
        real_link(src, dst)

    monkeypatch.setattr(os, "link", link_after_rival)
    assert load_or_create_master_key(path, None) == winner


def test_file_systems_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: str | Path, dst: str | Path) -> None:
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "master.key"
    key = load_or_create_master_key(path, None)
    assert load_or_create_master_key(path, None) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]
