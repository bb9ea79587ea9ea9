"""An in-memory channel for tests, simulations and benchmarks: it records what was sent, remembers each
idempotency key, and fails on demand."""

from __future__ import annotations

from collections.abc import Iterable

from rapport.channels.base import Message, Receipt
from rapport.clock import Clock, SystemClock
from rapport.errors import Terminal, Transient


class MemoryChannel:
    """Accepts every message unless a failure is queued with ``fail_next``.

    ``sent`` holds each accepted message once; a repeat of an idempotency key returns the first receipt
    and is counted in ``repeats``, as a peer that deduplicates would. ``attempts`` counts every call, so a
    test can tell 'sent once' from 'tried once'.
    """

    def __init__(self, clock: Clock | None = None, name: str = "memory") -> None:
        self.clock: Clock = clock or SystemClock()
        self.name = name
        self.sent: list[Message] = []
        self.receipts: dict[str, Receipt] = {}
        self.repeats = 0
        self.attempts = 0
        self._failures: list[Transient | Terminal] = []

    def fail_next(self, errors: Iterable[Transient | Terminal]) -> None:
        """Raise these errors, in order, from the next calls to ``send``."""
        self._failures.extend(errors)

    async def send(self, message: Message) -> Receipt:
        """Record ``message`` (once per idempotency key) or raise the next queued failure."""
        self.attempts += 1
        if self._failures:
            raise self._failures.pop(0)
        known = self.receipts.get(message.idempotency_key)
        if known is not None:
            self.repeats += 1
            return known
        receipt = Receipt(f"{self.name}-{len(self.sent) + 1}", self.clock.now_ms())
        self.receipts[message.idempotency_key] = receipt
        self.sent.append(message)
        return receipt
