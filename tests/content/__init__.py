"""Tests of the content library: block and placement kinds, apply-time checks, the PII print lint."""
