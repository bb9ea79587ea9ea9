"""Segments: one rule language evaluated live per event and in batch by SQL, membership with history."""
