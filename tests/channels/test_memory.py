"""The in-memory channel that journey tests and benchmarks send through."""

from __future__ import annotations

import asyncio

import pytest

from channels.support import NOW_MS
from rapport.channels import Channel, Message
from rapport.channels.base import Receipt
from rapport.channels.memory import MemoryChannel
from rapport.clock import FrozenClock
from rapport.errors import Terminal, Transient


def test_it_records_each_key_once_and_returns_the_first_receipt_for_a_repeat() -> None:
    memory = MemoryChannel(FrozenClock(NOW_MS))
    channel: Channel = memory

    async def run() -> list[Receipt]:
        return [await channel.send(Message("a", "ada@example.com")),
                await channel.send(Message("b", "bob@example.org")),
                await channel.send(Message("a", "ada@example.com", text="again"))]

    first, second, repeat = asyncio.run(run())
    assert [m.idempotency_key for m in memory.sent] == ["a", "b"]
    assert repeat == first == Receipt("memory-1", NOW_MS)
    assert second.provider_id == "memory-2"
    assert (memory.attempts, memory.repeats) == (3, 1)


def test_queued_failures_are_raised_in_order_then_sends_succeed() -> None:
    memory = MemoryChannel(FrozenClock(NOW_MS))
    memory.fail_next([Transient("smtp transient failure 451: later"), Terminal("smtp permanent failure 550: no")])
    with pytest.raises(Transient):
        asyncio.run(memory.send(Message("a", "ada@example.com")))
    with pytest.raises(Terminal):
        asyncio.run(memory.send(Message("a", "ada@example.com")))
    asyncio.run(memory.send(Message("a", "ada@example.com")))
    assert (len(memory.sent), memory.attempts) == (1, 3)
