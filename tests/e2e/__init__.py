"""End-to-end tests: a real ``rapport serve`` process driven over HTTP."""
