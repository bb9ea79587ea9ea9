"""Experiments: variant assignment, metrics and the statistics engine that judges them."""
