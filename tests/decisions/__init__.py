"""Tests of the decision engine and its service."""
