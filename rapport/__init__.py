"""Rapport: a consent-first customer data and personalization platform."""

__version__ = "0.1.0"
