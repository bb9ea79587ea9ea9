"""Storage: one set of protocols, SQLite (embedded default) and PostgreSQL (scale-out) backends."""

from __future__ import annotations

from rapport.settings import Settings
from rapport.storage.base import Conn, Database


def open_database(settings: Settings, *, max_backlog: int | None = None) -> Database:
    """Open (and migrate) the database named by ``settings.database_url``."""
    backlog = settings.max_queue if max_backlog is None else max_backlog
    if settings.is_sqlite:
        from rapport.storage.sqlite.database import SqliteDatabase

        return SqliteDatabase(settings.sqlite_path(), max_backlog=backlog)
    from rapport.storage.postgres.database import PostgresDatabase

    return PostgresDatabase(settings.database_url, max_backlog=backlog)


__all__ = ["Conn", "Database", "open_database"]
