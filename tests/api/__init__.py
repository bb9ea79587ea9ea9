"""Tests of the HTTP API (tracking and admin) through the real ASGI app, on SQLite and PostgreSQL."""
