"""Journeys: the validated step tree (``model``), the pure enrollment state machine (``machine``),
local times of day (``daytime``), split assignment (``split``) and the send gate (``gate``).

The package itself imports nothing, so importing one of its modules never pulls in the others.
"""
