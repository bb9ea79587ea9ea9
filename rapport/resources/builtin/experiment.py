"""The experiment resource kind."""
