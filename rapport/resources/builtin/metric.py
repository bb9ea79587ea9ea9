"""The metric resource kind."""
