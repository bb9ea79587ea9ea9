"""The placement resource kind."""
