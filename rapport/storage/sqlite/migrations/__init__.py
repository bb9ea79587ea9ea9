"""SQLite schema migrations (``NNNN_name.sql``)."""
