"""Ingestion: validate, dedupe, tag consent and durably store incoming Segment-spec messages."""
