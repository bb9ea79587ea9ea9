"""Versioned schema migrations: numbered ``.sql`` files per backend, applied once, in order."""

from __future__ import annotations

from importlib import resources

from rapport.storage.base import Conn

_TABLE = "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)"


def migration_files(package: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) for every ``NNNN_name.sql`` file in ``package``, sorted by version."""
    out = []
    for entry in resources.files(package).iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            out.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(out)


def split_statements(sql: str) -> list[str]:
    """Statements of a migration file (``;`` at the end of a line ends a statement)."""
    parts, current = [], []
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            parts.append("\n".join(current).strip().rstrip(";"))
            current = []
    tail = "\n".join(current).strip()
    if tail:
        parts.append(tail)
    return [p for p in parts if p]


def pending(conn: Conn, package: str) -> list[tuple[int, str, str]]:
    conn.execute(_TABLE)
    done = {row[0] for row in conn.all("SELECT version FROM schema_migrations")}
    return [m for m in migration_files(package) if m[0] not in done]


def apply_migration(conn: Conn, version: int, name: str, sql: str) -> None:
    for statement in split_statements(sql):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (version, name))
