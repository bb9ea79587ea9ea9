"""Tests of journeys: the resource kind, the step tree and the enrollment state machine."""
