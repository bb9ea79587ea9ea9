"""A person's subscription groups: joined or left, kept in the consent ledger with the same provenance.

A choice about group ``news`` is a ledger entry whose purpose is ``subscription:news`` (no consent purpose
can take that name: purpose names have no ``:``), ``granted`` when the person joins and ``withdrawn`` when
they leave. The ledger stays the one append-only record of what a person allowed, and merges, erasure and
reports already cover it. Without an entry the group's ``default`` decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import quote

from rapport.clock import Clock
from rapport.consent import links
from rapport.consent.decide import latest_entry
from rapport.consent.model import ConsentState, LedgerEntry
from rapport.errors import ValidationError
from rapport.resources.builtin.subscription_group import SubscriptionGroup
from rapport.storage.base import Conn
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import workspaces as ws_sql
from rapport.types import Millis, ProfileId
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import WorkspaceRuntime

PREFIX: Final = "subscription:"
MembershipReason = Literal["default", "joined", "left"]


def ledger_key(group: str) -> str:
    """The ledger ``purpose`` under which choices about ``group`` are recorded."""
    return PREFIX + group


@dataclass(frozen=True, slots=True)
class Membership:
    """Whether the person gets the group's messages, why, and the ledger entry that decided it."""

    group: SubscriptionGroup
    subscribed: bool
    reason: MembershipReason
    entry: LedgerEntry | None = None

    def to_json(self) -> dict[str, object]:
        return {"group": self.group.name, "description": self.group.description,
                "channels": sorted(self.group.channels), "subscribed": self.subscribed, "reason": self.reason,
                "default": "subscribed" if self.group.subscribed_by_default else "unsubscribed"}


def membership(entries: Sequence[LedgerEntry], group: SubscriptionGroup, at: Millis) -> Membership:
    """The person's membership of ``group`` at ``at``: their latest choice in effect, else the group's default."""
    latest = latest_entry(entries, ledger_key(group.name), at)
    if latest is None:
        return Membership(group, group.subscribed_by_default, "default")
    if latest.state == "granted":
        return Membership(group, True, "joined", latest)
    return Membership(group, False, "left", latest)


def left(entries: Sequence[LedgerEntry], groups: Iterable[SubscriptionGroup], at: Millis) -> frozenset[str]:
    """The names of ``groups`` whose messages the person does not get at ``at``."""
    return frozenset(g.name for g in groups if not membership(entries, g, at).subscribed)


def record(conn: Conn, rt: WorkspaceRuntime, clock: Clock, profile_id: str, group: str, state: ConsentState,
           source: str, proof: str | None) -> str:
    """Append the person's choice about ``group`` (``granted``: joined, ``withdrawn``: left) to the ledger,
    effective now and audited; returns the entry's id."""
    if group not in rt.subscription_groups:
        raise ValidationError(f"unknown subscription group {group!r}; expected one of "
                              f"{', '.join(map(repr, sorted(rt.subscription_groups))) or 'none (none is defined)'}",
                              code="unknown_subscription_group", details=[{"group": group}])
    now = clock.now_ms()
    entry_id = clock.new_id("cns")
    consent_sql.append(conn, rt.id, (entry_id, profile_id, profile_id, ledger_key(group), state, "consent", source,
                                     None, proof, now, now, None, None))
    ws_sql.audit(conn, rt.id, source, f"subscription.{state}", profile_id, {"group": group, "entry": entry_id}, now)
    return entry_id


def unsubscribe_link(base_url: str, rt: WorkspaceRuntime, profile_id: str, group: str, at: Millis, *,
                     keyring: Keyring) -> str:
    """The person's one-click unsubscribe URL for ``group`` (RFC 8058): its token covers that group only, so it
    leaves the group and changes nothing else."""
    if not base_url.startswith(("https://", "http://")):
        raise ValidationError(f"the link base URL must start with https:// (or http://), got {base_url!r}",
                              code="invalid_link_base")
    token = links.make_token(links.link_key(keyring, rt), rt.id, ProfileId(profile_id), at, (ledger_key(group),))
    return f"{base_url.rstrip('/')}/unsubscribe/{token}?group={quote(group)}"
