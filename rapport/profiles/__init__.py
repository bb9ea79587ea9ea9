"""Profiles: traits with source and time, computed traits kept incrementally in time buckets."""
