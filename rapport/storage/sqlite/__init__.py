"""SQLite backend: the embedded default (WAL, one writer, group commit)."""
