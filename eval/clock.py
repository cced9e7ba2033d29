"""One clock per trial: monotonic nanoseconds since the trial's origin.

The harness times everything it does on CLOCK_MONOTONIC. The operator (another process) stamps
tickets and actions with wall UTC; those convert through the wall time read at the origin (the
offset between the two clocks, measured once), so a wall-clock step during a trial moves only the
operator's rows, and only by that step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

NS = 1_000_000_000


@dataclass(frozen=True)
class TrialClock:
    origin_mono_ns: int
    origin_wall: float  # Unix seconds at the origin

    @classmethod
    def start(cls) -> TrialClock:
        return cls(time.monotonic_ns(), time.time())

    def now_ns(self) -> int:
        return time.monotonic_ns() - self.origin_mono_ns

    def wall_to_ns(self, at: datetime | float) -> int:
        wall = at.timestamp() if isinstance(at, datetime) else float(at)
        return round((wall - self.origin_wall) * NS)

    def ns_to_wall(self, t_ns: int) -> float:
        return self.origin_wall + t_ns / NS


def seconds(t_ns: int | None) -> float | None:
    return None if t_ns is None else round(t_ns / NS, 3)
