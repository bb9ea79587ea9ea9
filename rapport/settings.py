"""Configuration: one frozen ``Settings`` built from ``RAPPORT_*`` variables; nothing else reads the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class Secret(str):
    """A string whose repr never shows its value."""

    def __repr__(self) -> str:
        return "Secret('********')"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = "sqlite:///.rapport/rapport.db"
    host: str = "127.0.0.1"
    port: int = 8000
    master_key: Secret | None = None
    """Base64 of 32 bytes; absent: a key file beside the SQLite database (created on first use)."""
    data_dir: Path = Path(".rapport")
    max_queue: int = 20_000
    """Events waiting for the writer before ingestion answers 429."""
    log_level: str = "info"
    log_json: bool = True
    send_lease_seconds: float = 300.0
    """How long a worker holds a message it handed to a channel before another worker may send it again (with
    the same idempotency key) because the first one died; longer than any channel's timeout."""
    public_url: str = ""
    """The base URL people reach this server at, for links in messages (preference center, unsubscribe,
    open and click tracking); empty: ``http://HOST:PORT``."""
    extra: Mapping[str, str] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The process environment, where Channel resources' ``*_env`` fields name their secrets."""

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")

    def sqlite_path(self) -> str:
        """The file path of a ``sqlite:///path`` URL (``:memory:`` allowed)."""
        return self.database_url.removeprefix("sqlite:///").removeprefix("sqlite://")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``RAPPORT_*`` variables (``environ`` defaults to the process environment)."""
    env = os.environ if environ is None else environ
    data_dir = Path(env.get("RAPPORT_DATA_DIR", ".rapport"))
    url = env.get("RAPPORT_DATABASE_URL") or f"sqlite:///{data_dir / 'rapport.db'}"
    key = env.get("RAPPORT_MASTER_KEY")
    return Settings(
        database_url=url,
        host=env.get("RAPPORT_HOST", "127.0.0.1"),
        port=int(env.get("RAPPORT_PORT", "8000")),
        master_key=Secret(key) if key else None,
        data_dir=data_dir,
        max_queue=int(env.get("RAPPORT_MAX_QUEUE", "20000")),
        log_level=env.get("RAPPORT_LOG_LEVEL", "info"),
        log_json=env.get("RAPPORT_LOG_FORMAT", "json") == "json",
        public_url=env.get("RAPPORT_PUBLIC_URL", ""),
        send_lease_seconds=float(env.get("RAPPORT_SEND_LEASE_SECONDS", "300")),
        extra={k: v for k, v in env.items() if k.startswith("RAPPORT_")},
        environ=dict(env),
    )
