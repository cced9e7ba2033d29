"""A discrete-event queue in simulated time.

Everything that happens later (heartbeats, elections, operator steps, scheduler runs) is an event,
so the model's state depends only on the sequence of clock advances and API calls, never on how
finely the server's tick loop happens to slice wall time.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any


class EventQueue:
    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, at: float, fn: Callable[..., Any], *args: Any) -> None:
        self._seq += 1  # ties run in the order they were scheduled
        heapq.heappush(self._heap, (at, self._seq, fn, args))

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop(self) -> tuple[float, Callable[..., Any], tuple[Any, ...]]:
        at, _, fn, args = heapq.heappop(self._heap)
        return at, fn, args
