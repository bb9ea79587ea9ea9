"""Recommendations: popular in a segment, bought together, replenishment."""
