"""Deterministic split assignment: the same profile always takes the same path of the same split.

The bucket of a profile is the first 8 bytes of SHA-256 over ``journey``, the split's step id and
the profile id (UTF-8, separated by the unit separator U+001F), read as a big-endian integer,
modulo 10,000: the one bucket function of Rapport, shared with experiments
(``rapport.experiments.assign``). The split's step id is part of the key so that two splits of one
journey assign independently; with only ``(journey, profile)`` a profile in the first half of one
split would be in the first half of every other. Buckets below ``holdout × 100`` are held out; the
rest are shared among the paths in proportion to their weights, in the order the paths are written.
"""

from __future__ import annotations

from fractions import Fraction

from rapport.experiments import assign as experiments
from rapport.experiments.assign import BUCKETS as BUCKETS
from rapport.journeys.model import HOLDOUT, SplitPath, SplitStep


def bucket(journey: str, split: str, profile_id: str) -> int:
    """The profile's bucket in ``[0, 10000)`` for one split of one journey."""
    return experiments.bucket(journey, split, profile_id)


def choose(split: SplitStep, slot: int) -> SplitPath | None:
    """The path of the profile in bucket ``slot``, or ``None`` when the holdout keeps it out."""
    held = split.holdout_percent * BUCKETS / 100
    if slot < held:
        return None
    total = sum((path.weight for path in split.paths), Fraction(0))
    share, upper = Fraction(0), Fraction(0)
    for path in split.paths:
        share += path.weight
        upper = held + (BUCKETS - held) * share / total
        if slot < upper:
            return path
    return split.paths[-1]  # unreachable: the last path's upper bound is BUCKETS


def assign(journey: str, split: SplitStep, profile_id: str) -> str:
    """The name of the path the profile takes at ``split``, or ``"holdout"``."""
    path = choose(split, bucket(journey, split.id, profile_id))
    return HOLDOUT if path is None else path.name
