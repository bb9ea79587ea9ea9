"""PostgreSQL schema migrations (``NNNN_name.sql``)."""
