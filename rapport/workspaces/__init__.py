"""Workspaces: tenants, their credentials (write keys, scoped admin tokens) and settings."""
