"""Journeys: the validated step tree (``model``), the pure enrollment state machine (``machine``),
split assignment (``split``), the person's local time (``timing``) and the send gate (``gate``).

The package itself imports nothing, so importing one of its modules never pulls in the others.
"""
