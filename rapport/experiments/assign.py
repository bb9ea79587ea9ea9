"""Experiment assignment: a pure, specified map from (salt, unit id) to a variant.

The specification, with test vectors that the tests read back, is ``docs/experiments-assignment.md``.
In short: the bucket of a unit is the first 8 bytes of SHA-256 over the UTF-8 parts joined by the
unit separator U+001F, read as a big-endian integer, modulo 10,000. Buckets below
``holdout_percent × 100`` are held out; the rest is shared among the variants by weight in the order
they are written, and ``traffic_percent`` keeps only the first part of each variant's share, so that
raising the traffic only adds units and never moves one to another variant. Every boundary is an
exact fraction; no floating point takes part.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Literal

from rapport.errors import ValidationError

BUCKETS: Final = 10_000
SEPARATOR: Final = "\x1f"

Reason = Literal["variant", "holdout", "excluded", "global_holdout"]
Number = int | str | Fraction


def bucket(*parts: str) -> int:
    """The bucket in ``[0, 10000)`` of the parts, e.g. ``bucket(salt, unit_id)``."""
    if not parts:
        raise ValidationError("bucket needs at least one part (the salt and the unit id)")
    try:
        key = SEPARATOR.join(parts).encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValidationError(f"cannot hash {error.object!r}: lone surrogates have no UTF-8") from None
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % BUCKETS


def _exact(value: Number, what: str) -> Fraction:
    """``value`` as an exact fraction; floats are refused because ``0.1`` is not one tenth."""
    if isinstance(value, bool) or not isinstance(value, int | str | Fraction):
        raise ValidationError(f"{what} must be an integer, a decimal string or a Fraction, not {value!r}")
    try:
        return Fraction(value)
    except (ValueError, ZeroDivisionError):
        raise ValidationError(f"{what} must be a number, not {value!r}") from None


def _percent(value: Number, what: str) -> Fraction:
    percent = _exact(value, what)
    if not 0 <= percent <= 100:
        raise ValidationError(f"{what} must be between 0 and 100, not {value!r}")
    return percent


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm of an experiment; its share of the assigned units is ``weight / sum of weights``."""

    name: str
    weight: Fraction | int = 1


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where a unit lands: its bucket, its variant (``None`` unless ``reason == "variant"``) and why."""

    bucket: int
    variant: str | None
    reason: Reason


@dataclass(frozen=True, slots=True)
class GlobalHoldout:
    """The workspace-wide holdout: units it holds enter no experiment at all.

    ``salt`` is the workspace's own salt, distinct from every experiment salt, so that the global
    holdout is independent of each experiment's buckets.
    """

    salt: str
    percent: Fraction | int

    def holds(self, unit_id: str) -> bool:
        """Whether the unit is in the global holdout."""
        _check_key(self.salt, unit_id, "global holdout salt")
        return bucket(self.salt, unit_id) < _percent(self.percent, "global holdout percent") * BUCKETS / 100


def _check_key(salt: str, unit_id: str, what: str = "salt") -> None:
    if not isinstance(salt, str) or not salt:
        raise ValidationError(f"{what} must be a non-empty string, not {salt!r}")
    if SEPARATOR in salt:
        raise ValidationError(f"{what} {salt!r} must not contain the separator U+001F")
    if not isinstance(unit_id, str) or not unit_id:
        raise ValidationError(f"unit id must be a non-empty string, not {unit_id!r}")


def _weights(variants: Sequence[Variant]) -> list[Fraction]:
    if not variants:
        raise ValidationError("an experiment needs at least one variant")
    names = [variant.name for variant in variants]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValidationError(f"variant names must be unique; repeated: {', '.join(map(repr, duplicates))}")
    weights = []
    for variant in variants:
        if not isinstance(variant.name, str) or not variant.name:
            raise ValidationError(f"variant name must be a non-empty string, not {variant.name!r}")
        weight = _exact(variant.weight, f"weight of variant {variant.name!r}")
        if weight < 0:
            raise ValidationError(f"weight of variant {variant.name!r} must not be negative, not {variant.weight!r}")
        weights.append(weight)
    if sum(weights) == 0:
        raise ValidationError(f"the weights of variants {', '.join(map(repr, names))} add up to 0")
    return weights


def place(
    salt: str,
    unit_id: str,
    variants: Sequence[Variant],
    *,
    holdout_percent: Number = 0,
    traffic_percent: Number = 100,
    global_holdout: GlobalHoldout | None = None,
) -> Assignment:
    """Where the unit lands in the experiment salted ``salt``, with the reason."""
    _check_key(salt, unit_id)
    weights = _weights(variants)
    held = _percent(holdout_percent, "holdout_percent") * BUCKETS / 100
    traffic = _percent(traffic_percent, "traffic_percent") / 100
    slot = bucket(salt, unit_id)
    if global_holdout is not None and global_holdout.holds(unit_id):
        return Assignment(slot, None, "global_holdout")
    if slot < held:
        return Assignment(slot, None, "holdout")
    span, total, before = BUCKETS - held, sum(weights, Fraction(0)), Fraction(0)
    for variant, weight in zip(variants, weights, strict=True):
        lower = held + span * before / total
        if lower <= slot < lower + span * traffic * weight / total:
            return Assignment(slot, variant.name, "variant")
        before += weight
    return Assignment(slot, None, "excluded")


def assign(
    salt: str,
    unit_id: str,
    variants: Sequence[Variant],
    *,
    holdout_percent: Number = 0,
    traffic_percent: Number = 100,
    global_holdout: GlobalHoldout | None = None,
) -> str | None:
    """The unit's variant, or ``None`` when a holdout keeps it out or the traffic allocation leaves it out."""
    return place(
        salt,
        unit_id,
        variants,
        holdout_percent=holdout_percent,
        traffic_percent=traffic_percent,
        global_holdout=global_holdout,
    ).variant
