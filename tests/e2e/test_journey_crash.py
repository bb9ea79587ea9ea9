"""The journey crash benchmark (``bench/journey_crash.py``) as a test, on each backend: 10,000 people pass a
journey's email step while ``rapport worker`` processes are killed with SIGKILL at random moments and
restarted; afterwards a real SMTP server holds exactly one distinct ``Message-ID`` per intended email, the one
the send log recorded, and nothing else (the script exits 1 on a violation)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Backend

CRASH = Path(__file__).resolve().parents[2] / "bench" / "journey_crash.py"


def test_killed_workers_neither_lose_nor_repeat_an_email(backend: Backend, tmp_path: Path) -> None:
    workers = "1" if backend.name == "sqlite" else "2"
    cmd = [sys.executable, str(CRASH), "--database-url", backend.url, "--data-dir", str(tmp_path),
           "--enrollments", "10000", "--workers", workers, "--kills", "8", "--lease", "5", "--timeout", "600"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"bench/journey_crash.py exited with {done.returncode}:\n{output}"
    assert "-> PASS" in done.stdout and "violation:" not in done.stdout, output
    summary = next(line for line in done.stdout.splitlines() if line.startswith("enrollments 10000"))
    assert "distinct Message-IDs 10000" in summary, summary
    kills = next(line for line in done.stdout.splitlines() if line.endswith("kills") or " kills: " in line)
    assert not kills.startswith("0 kills"), kills
