"""Decisions: the right block for this person at this moment, with a reason and a confidence."""
