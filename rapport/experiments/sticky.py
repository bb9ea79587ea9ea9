"""Sticky assignment: a profile's variant is computed once, stored on the unified profile and read back after.

The unit is the live profile a (possibly merged) profile id belongs to. The first call places it with
``rapport.experiments.assign.place`` and stores the result; every later call returns what was stored, even if
the experiment's variants, holdout or traffic changed since, so nobody ever switches variant. Merges keep the
winner's assignment where both profiles had one and give it the loser's elsewhere; an unmerge gives the loser
back its own (``rapport.storage.sql.experiments``). Two concurrent first calls agree: the store keeps the
first row written and both read that one back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

from rapport.errors import NotFoundError, ValidationError
from rapport.experiments.assign import Assignment, GlobalHoldout, Number, Reason, Variant, place
from rapport.storage.base import Conn
from rapport.storage.sql import experiments as experiments_sql
from rapport.storage.sql import identity as identity_sql
from rapport.types import Millis

REASONS: dict[str, Reason] = {reason: reason for reason in get_args(Reason)}
"""The stored reasons, each as the ``Reason`` it is."""


def assignment(
    conn: Conn,
    ws: str,
    experiment: str,
    salt: str,
    profile_id: str,
    variants: Sequence[Variant],
    *,
    holdout_percent: Number = 0,
    traffic_percent: Number = 100,
    global_holdout: GlobalHoldout | None = None,
    now: Millis,
) -> Assignment:
    """The stored assignment of the live profile holding ``profile_id`` in ``experiment``, made now if it has none.

    A new assignment hashes the live profile's id with ``salt``. Raises ``NotFoundError`` for an unknown
    profile id and ``ValidationError`` for an empty experiment name or invalid placement arguments.
    """
    if not isinstance(experiment, str) or not experiment:
        raise ValidationError(f"experiment must be a non-empty name, not {experiment!r}")
    root = identity_sql.live_root(conn, ws, profile_id)
    if root is None:
        raise NotFoundError(f"no profile {profile_id!r}", code="profile_not_found")
    row = experiments_sql.stored(conn, ws, root, experiment)
    if row is None:
        placed = place(salt, root, variants, holdout_percent=holdout_percent, traffic_percent=traffic_percent,
                       global_holdout=global_holdout)
        experiments_sql.insert(conn, ws, root, experiment, placed.variant, placed.bucket, placed.reason, now)
        row = experiments_sql.stored(conn, ws, root, experiment)
        if row is None:
            raise RuntimeError(f"the assignment of profile {root!r} in experiment {experiment!r} was not stored")
    reason = REASONS.get(str(row[2]))
    if reason is None:
        raise RuntimeError(f"the stored assignment of {root!r} in {experiment!r} has an unknown reason {row[2]!r}")
    return Assignment(int(row[1]), row[0], reason)
