"""PostgreSQL backend (psycopg 3): the scale-out store."""
