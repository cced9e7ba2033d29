"""What one node remembers locally: per-key admissions, the optional local cache, latencies.

All bounded: the most recent `max_keys` keys, a ring of `RING` admissions per key, a ring of
latency samples. Times of admissions are on Redis's clock (microseconds, estimated between
round trips by `RedisClock`) so that they compare with the counters in Redis.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

# Admissions remembered per key. A node that admits more than this in one window reports
# RING, which is still above any limit it could be over-admitting against below RING.
RING = 4096
LATENCY_SAMPLES = 2048
LATENCY_HORIZON_S = 60.0


class RedisClock:
    """Redis's clock, estimated from the last time Redis told us the time."""

    def __init__(self) -> None:
        self.offset_us = 0

    def observe(self, redis_now_us: int) -> None:
        self.offset_us = redis_now_us - time.time_ns() // 1000

    def now_us(self) -> int:
        return time.time_ns() // 1000 + self.offset_us


@dataclass
class KeyStats:
    limit: int
    window_ms: int
    admissions: deque = field(default_factory=lambda: deque(maxlen=RING))
    allowed_total: int = 0
    denied_total: int = 0

    def admitted_in_window(self, at_us: int) -> int:
        start = at_us - self.window_ms * 1000
        return sum(1 for t in self.admissions if start < t <= at_us)


class KeyTracker:
    """Per-key admissions of this node, for the most recent `max_keys` keys."""

    def __init__(self, max_keys: int = 1000) -> None:
        self.max_keys = max_keys
        self.keys: OrderedDict[str, KeyStats] = OrderedDict()

    def record(self, key: str, limit: int, window_ms: int, allowed: bool, at_us: int) -> None:
        stats = self.keys.get(key)
        if stats is None:
            stats = self.keys[key] = KeyStats(limit, window_ms)
            while len(self.keys) > self.max_keys:
                self.keys.popitem(last=False)
        else:
            self.keys.move_to_end(key)
            stats.limit, stats.window_ms = limit, window_ms
        if allowed:
            stats.admissions.append(at_us)
            stats.allowed_total += 1
        else:
            stats.denied_total += 1

    def last_limit(self, key: str) -> tuple[int, int] | None:
        stats = self.keys.get(key)
        return None if stats is None else (stats.limit, stats.window_ms)


@dataclass
class CacheEntry:
    limit: int
    window_ms: int
    log: deque  # admission times in the window as this node last saw them, plus its own since
    fetched_mono: float

    def trim(self, now_us: int) -> None:
        start = now_us - self.window_ms * 1000
        while self.log and self.log[0] <= start:
            self.log.popleft()


class LocalCache:
    """A node's local view of keys' logs, trusted for `ttl_ms` without asking Redis.

    Admissions decided from the cache are NOT written to Redis: the other nodes never see them,
    and this node never sees theirs until the entry goes stale. That is the drift, and the
    over-admission, that a cache with a long TTL causes.
    """

    def __init__(self, ttl_ms: int = 0, max_entries: int = 10_000) -> None:
        self.ttl_ms = ttl_ms
        self.max_entries = max_entries
        self.entries: OrderedDict[str, CacheEntry] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.ttl_ms > 0

    def fresh(self, key: str, now_mono: float) -> CacheEntry | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if (now_mono - entry.fetched_mono) * 1000 >= self.ttl_ms:
            del self.entries[key]
            return None
        return entry

    def store(self, key: str, limit: int, window_ms: int, log: tuple[int, ...], now_mono: float) -> None:
        self.entries[key] = CacheEntry(limit, window_ms, deque(sorted(log)), now_mono)
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def decide(self, entry: CacheEntry, limit: int, now_us: int) -> tuple[bool, int, int]:
        """(allowed, count after, reset_us) from the local view alone."""
        entry.trim(now_us)
        allowed = len(entry.log) < limit
        if allowed:
            entry.log.append(now_us)
        reset_us = entry.log[0] + entry.window_ms * 1000 - now_us if entry.log else 0
        return allowed, len(entry.log), reset_us

    def local_count(self, key: str, now_us: int) -> int | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        entry.trim(now_us)
        return len(entry.log)

    def flush(self, key: str | None = None) -> int:
        if key is not None:
            return 1 if self.entries.pop(key, None) is not None else 0
        n = len(self.entries)
        self.entries.clear()
        return n


class LatencyWindow:
    """Recent check latencies (the last LATENCY_SAMPLES within LATENCY_HORIZON_S)."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, float]] = deque(maxlen=LATENCY_SAMPLES)

    def add(self, seconds: float) -> None:
        self.samples.append((time.monotonic(), seconds))

    def p99_ms(self) -> float | None:
        horizon = time.monotonic() - LATENCY_HORIZON_S
        values = sorted(s for t, s in self.samples if t >= horizon)
        if not values:
            return None
        index = min(len(values) - 1, max(0, -(-99 * len(values) // 100) - 1))
        return round(values[index] * 1000, 3)
