"""The crash benchmark (``bench/crash.py``) as tests: one quick round per backend, and a few more (slow).

Each round kills ``rapport serve`` with SIGKILL under concurrent gzip batches, restarts it, retries
and resends batches, and checks through the admin API that every acknowledged event is stored
exactly once and that ``order_count`` matches the stored orders. The script exits 1 on a violation.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Backend

CRASH = Path(__file__).resolve().parents[2] / "bench" / "crash.py"


@pytest.fixture(scope="module")
def crash_data_dir(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One key directory per module database, so every run on it can read what earlier runs stored."""
    return tmp_path_factory.mktemp(f"crash-{backend.name}")


def run_crash(backend: Backend, data_dir: Path, *args: str, timeout: float) -> str:
    cmd = [sys.executable, str(CRASH), "--database-url", backend.url, "--data-dir", str(data_dir), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"bench/crash.py exited with {done.returncode}:\n{output}"
    assert "-> PASS" in done.stdout, output
    assert "violation:" not in done.stdout, output
    return done.stdout


def test_one_crash_round(backend: Backend, crash_data_dir: Path) -> None:
    out = run_crash(backend, crash_data_dir, "--rounds", "1", "--threads", "6", "--max-kill", "1.2", timeout=120)
    assert "round   1/1" in out


@pytest.mark.slow
def test_crash_rounds(backend: Backend, crash_data_dir: Path) -> None:
    out = run_crash(backend, crash_data_dir, "--rounds", "5", timeout=600)
    assert out.count(" OK\n") == 5, out
