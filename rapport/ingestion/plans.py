"""Tracking plans at the door: each message is accepted, flagged, quarantined or rejected."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from rapport.ingestion.model import ItemError, Message, Quarantined
from rapport.resources.builtin.tracking_plan import compile_plan
from rapport.types import JsonObject


def check_plans(
    plans: Sequence[JsonObject], indexed: Sequence[tuple[int, Message]]
) -> tuple[list[Message], list[Quarantined], list[ItemError]]:
    """Split messages by the workspace's tracking plans (every plan applies; the strictest mode wins)."""
    if not plans:
        return [m for _, m in indexed], [], []
    compiled = [(p["name"], p.get("mode", "reject"), compile_plan(p)) for p in plans]
    accepted: list[Message] = []
    quarantined: list[Quarantined] = []
    errors: list[ItemError] = []
    for index, message in indexed:
        worst: tuple[str, str, list[str]] | None = None
        for name, mode, plan in compiled:
            problems = plan.violations(message.body)
            if problems and (worst is None or _RANK[mode] > _RANK[worst[1]]):
                worst = (name, mode, problems)
        if worst is None:
            accepted.append(message)
        elif worst[1] == "reject":
            errors.append(ItemError(index, "tracking_plan_violation",
                                    f"violates tracking plan {worst[0]!r}: " + "; ".join(worst[2])))
        elif worst[1] == "quarantine":
            quarantined.append(Quarantined(message, worst[0], tuple(worst[2])))
        else:
            accepted.append(dataclasses.replace(message, flagged=True))
    return accepted, quarantined, errors


_RANK = {"flag": 0, "quarantine": 1, "reject": 2}
