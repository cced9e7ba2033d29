"""Simulated time: a wall clock that runs `time_scale` times faster, or a manual one for tests.

Every timestamp the simulator reports is simulated time, in seconds since the Unix epoch. The sim
epoch is the wall time at start, so at time_scale 1 the simulator's clock reads like a real one.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    time_scale: float

    def now(self) -> float:
        """Simulated seconds since the Unix epoch."""
        ...


class WallClock:
    """Simulated time = epoch + (wall seconds since start) * time_scale; monotonic underneath."""

    def __init__(self, time_scale: float, epoch: float | None = None) -> None:
        self.time_scale = float(time_scale)
        self.epoch = time.time() if epoch is None else float(epoch)
        self._mono0 = time.monotonic()

    def now(self) -> float:
        return self.epoch + (time.monotonic() - self._mono0) * self.time_scale


class ManualClock:
    """A clock that only moves when told to: tests drive the model without sleeping."""

    def __init__(self, start: float = 1_735_000_000.0, time_scale: float = 1.0) -> None:
        self._now = float(start)
        self.time_scale = float(time_scale)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds
        return self._now

    def set(self, t: float) -> None:
        if t < self._now:
            raise ValueError("a clock cannot go backwards")
        self._now = float(t)
