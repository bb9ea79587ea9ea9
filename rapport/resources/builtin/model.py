"""The model resource kind."""
