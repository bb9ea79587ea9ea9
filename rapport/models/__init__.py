"""Propensity models: trained over computed traits, calibrated, versioned, explained."""
