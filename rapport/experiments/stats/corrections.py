"""Multiple-comparison corrections: Holm (family-wise error) and Benjamini–Hochberg (false discoveries)."""

from __future__ import annotations

from collections.abc import Sequence


def _check(p_values: Sequence[float]) -> None:
    bad = [p for p in p_values if not 0.0 <= p <= 1.0]
    if bad:
        raise ValueError(f"p-values must be in [0, 1], got {bad}")


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order."""
    _check(p_values)
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg step-up adjusted p-values (q-values), in the input order."""
    _check(p_values)
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i], reverse=True)
    adjusted = [0.0] * m
    running = 1.0
    for position, i in enumerate(order):
        rank = m - position
        running = min(running, p_values[i] * (m / rank))
        adjusted[i] = running
    return adjusted
