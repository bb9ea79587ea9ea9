"""SubscriptionGroup: a kind of message a person can leave or join on its own (a newsletter, product news)
while keeping the rest of a channel.

A journey (or one of its send steps) names its group with ``subscription_group:``; the send gate refuses a
message of a group the person is not subscribed to, with reason ``unsubscribed``. ``default: subscribed``
counts everyone as a member until they leave (the channel's consent purpose still applies first);
``default: unsubscribed`` sends only to people who joined. Choices are consent ledger entries
(``rapport.consent.subscriptions``), made in the preference center or by a group message's one-click
unsubscribe link.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from rapport.resources.builtin.journey import walk_steps
from rapport.resources.checks import list_of, one_of, reference, text
from rapport.resources.fields import did_you_mean, optional, quoted, render_path
from rapport.resources.kinds import KindSpec, register
from rapport.types import JsonObject

DEFAULTS: Final = ("subscribed", "unsubscribed")

FIELDS: Final = {
    "description": optional(text("what the group's messages are, as the preference center shows it")),
    "channels": optional(list_of(reference("a Channel name"), unique=True)),
    "default": optional(one_of(*DEFAULTS), default="subscribed"),
}


@dataclass(frozen=True, slots=True)
class SubscriptionGroup:
    """A ``SubscriptionGroup`` resource as the send gate and the preference center use it."""

    name: str
    description: str = ""
    channels: frozenset[str] = frozenset()
    """The channels whose messages the group governs; empty: every channel."""
    subscribed_by_default: bool = True

    def covers(self, channel: str) -> bool:
        """Whether a message on ``channel`` of a journey in this group is one of the group's messages."""
        return not self.channels or channel in self.channels

    @classmethod
    def from_spec(cls, spec: JsonObject) -> SubscriptionGroup:
        """The group of a validated spec."""
        channels = spec.get("channels") or []
        return cls(str(spec["name"]), str(spec.get("description") or ""),
                   frozenset(str(c) for c in channels if isinstance(c, str)),
                   spec.get("default", "subscribed") == "subscribed")


def reference_problems(specs: Mapping[tuple[str, str], JsonObject]) -> Iterator[tuple[str, str, str, str]]:
    """``(kind, name, field, message)`` for each name about subscription groups in the final resources ``specs``
    (by kind and name) that does not hold: a group's channels exist, a journey's or send step's group exists,
    and a send step's own group covers the step's channel."""
    channels = {name for kind, name in specs if kind == "Channel"}
    groups = {name: SubscriptionGroup.from_spec(spec) for (kind, name), spec in specs.items()
              if kind == "SubscriptionGroup"}
    for (kind, name), spec in sorted(specs.items()):
        if kind == "SubscriptionGroup":
            listed = spec.get("channels")
            for index, channel in enumerate(listed if isinstance(listed, list) else []):
                if channel not in channels:
                    yield kind, name, f"channels[{index}]", _unknown("channel", str(channel), channels)
        if kind != "Journey":
            continue
        own = spec.get("subscription_group")
        if isinstance(own, str) and own not in groups:
            yield kind, name, "subscription_group", _unknown("subscription group", own, set(groups))
        for path, step, body in walk_steps(spec.get("steps"), ("steps",)):
            group, channel = body.get("subscription_group"), body.get("channel")
            if step != "send" or not isinstance(group, str):
                continue
            field = render_path((*path, "subscription_group"))
            if group not in groups:
                yield kind, name, field, f"{field}: " + _unknown("subscription group", group, set(groups))
            elif isinstance(channel, str) and not groups[group].covers(channel):
                covered = quoted(sorted(groups[group].channels))
                yield kind, name, field, (f"{field} is {group!r}, whose messages go on {covered}, but the step "
                                          f"sends on {channel!r}; expected a group covering {channel!r}")


def _unknown(what: str, name: str, names: set[str]) -> str:
    options = f"one of {quoted(sorted(names))}" if names else f"a {what} name, but none is defined"
    return f"unknown {what} {name!r}{did_you_mean(name, names)}; expected {options}"


SUBSCRIPTION_GROUP: Final = register(KindSpec.from_fields("SubscriptionGroup", FIELDS))
