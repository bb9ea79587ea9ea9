"""The end-to-end harness: the server helper shared with ``bench/`` and the running stack it gives."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import _server  # noqa: E402  (bench/_server.py, also used by bench/crash.py)


@dataclass(frozen=True, slots=True)
class Stack:
    """A running server and the credentials of one workspace created with the CLI."""

    backend: str
    server: _server.Server
    workspace_id: str
    write_key: str
    admin_token: str

    @property
    def url(self) -> str:
        return self.server.url
