"""The clock the engine and agent use, so tests can drive time instead of waiting for it."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from operator_tui.timeutil import utcnow


class Clock:
    def now(self) -> datetime:
        return utcnow()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


SYSTEM_CLOCK = Clock()
