"""HTTP API: the Segment-compatible tracking endpoints and the admin REST API."""
