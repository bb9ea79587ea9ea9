"""Queries shared by every backend: plain ``fn(conn, workspace_id, ...)`` functions, values always bound."""
