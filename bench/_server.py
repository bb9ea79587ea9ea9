"""Run ``rapport serve`` as a child process for end-to-end tests and benchmarks (loopback only).

Shared by ``bench/crash.py`` and ``tests/e2e``: a free loopback port, the ``rapport`` command,
workspaces created through the CLI, a server that is started, waited for (``/healthz``), stopped
with SIGTERM or killed with SIGKILL, and a fresh PostgreSQL database created and dropped per run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def rapport_command() -> list[str]:
    """The ``rapport`` console script of the running interpreter's environment."""
    script = Path(sys.executable).with_name("rapport")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "rapport.cli"]


def server_env(database_url: str, data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a server (and of its CLI calls): only this run's ``RAPPORT_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_")}
    env.update({"RAPPORT_DATABASE_URL": database_url, "RAPPORT_DATA_DIR": str(data_dir),
                "RAPPORT_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


def create_workspace(env: Mapping[str, str], name: str, *, timeout: float = 60.0) -> dict[str, str]:
    """``rapport workspace create NAME --json``: the workspace id, write key and admin token."""
    done = subprocess.run([*rapport_command(), "workspace", "create", name, "--json"], env=dict(env),
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"rapport workspace create failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    out: dict[str, str] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return out


class Server:
    """One ``rapport serve`` child process on a loopback port, logging to a file."""

    def __init__(self, env: Mapping[str, str], log_path: Path, port: int | None = None) -> None:
        self.env = dict(env)
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, ready_timeout: float = 60.0) -> float:
        """Start and wait until ``/healthz`` answers 200; returns the seconds it took."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the server is already running")
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"--- start on port {self.port}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [*rapport_command(), "serve", "--host", LOOPBACK, "--port", str(self.port)],
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        self.wait_healthy(ready_timeout)
        return time.monotonic() - started

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: str = "no answer yet"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                assert self.proc is not None
                code = self.proc.poll()
                if code is not None:
                    raise RuntimeError(f"rapport serve exited with {code} before it was ready:\n{self.log_tail()}")
                try:
                    res = client.get(f"{self.url}/healthz")
                    if res.status_code == 200 and res.json().get("status") == "ok":
                        return
                    last = f"HTTP {res.status_code}: {res.text[:200]}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"rapport serve was not healthy within {timeout:.0f}s ({last}):\n{self.log_tail()}")

    def stop(self, *, timeout: float = 30.0) -> int:
        """SIGTERM and wait for the exit code (SIGKILL and an error if it does not exit in time)."""
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise RuntimeError(
                f"rapport serve did not exit within {timeout:.0f}s of SIGTERM:\n{self.log_tail()}") from None

    def kill(self) -> None:
        """SIGKILL (``kill -9``): no shutdown code runs."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.kill()


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def postgres_available(url: str) -> str | None:
    """None when ``url`` accepts connections; else why not."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip()[:300]}"
    return None


@contextlib.contextmanager
def fresh_postgres(url: str, prefix: str = "rapport_e2e") -> Iterator[str]:
    """A new, empty database on the server of ``url`` for the block; dropped afterwards."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_database(url, name)
    finally:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def admin_get(client: httpx.Client, url: str, token: str, path: str, **params: Any) -> httpx.Response:
    return client.get(f"{url}{path}", params=params, headers={"Authorization": f"Bearer {token}"})
