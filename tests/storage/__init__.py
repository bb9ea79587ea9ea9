"""Tests of the storage backends (SQLite and PostgreSQL): the same behaviour on both."""
