"""Open-loop measurement for evaluation workloads: planned send times, outcomes by second.

A request is planned at a fixed time and sent then, whatever earlier ones are doing; its latency
counts from the planned time, so a stall shows as latency rather than as fewer requests (no
coordinated omission, as wrk2 measures). Outcomes are Jepsen's: ok, fail (it certainly did not
happen), indeterminate (sent, no answer: it may have happened).

    buckets = Buckets(out_dir / BUCKETS_FILE, slo_ms=200)
    second = buckets.plan(planned_wall)          # when the request was due
    buckets.done(second, OK, latency_ms)         # or FAIL / INDETERMINATE
    buckets.flush(before_wall)                   # appends every finished second as one JSON line

Each line is ``{"t_wall", "planned", "ok", "fail", "indeterminate", "p50_ms", "p99_ms",
"over_slo"}`` (latency quantiles over ok requests; over_slo: ok requests slower than the SLO), and
planned = ok + fail + indeterminate in every line. Standard library only.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BUCKETS_FILE = "buckets.jsonl"
OK, FAIL, INDETERMINATE = "ok", "fail", "indeterminate"


def arrivals(rate: float, seed: int, horizon_s: float) -> Iterator[float]:
    """Poisson arrival offsets (seconds after the start) up to `horizon_s`, the same for a seed."""
    rng = random.Random(seed)
    t = rng.expovariate(rate)
    while t < horizon_s:
        yield t
        t += rng.expovariate(rate)


def quantile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank quantile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Bucket:
    t_wall: int
    planned: int = 0
    ok: int = 0
    fail: int = 0
    indeterminate: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    over_slo: int = 0

    @property
    def outstanding(self) -> int:
        return self.planned - self.ok - self.fail - self.indeterminate

    def line(self) -> dict:
        lat = sorted(self.latencies_ms)
        p50, p99 = quantile(lat, 0.50), quantile(lat, 0.99)
        return {"t_wall": float(self.t_wall), "planned": self.planned, "ok": self.ok, "fail": self.fail,
                "indeterminate": self.indeterminate, "p50_ms": None if p50 is None else round(p50, 2),
                "p99_ms": None if p99 is None else round(p99, 2), "over_slo": self.over_slo}


class Buckets:
    """Outcomes by second of planned send time, written once a second has no request outstanding."""

    def __init__(self, out: Path, slo_ms: float) -> None:
        self.out = out
        self.slo_ms = slo_ms
        self.open: dict[int, Bucket] = {}
        self.totals = {"planned": 0, OK: 0, FAIL: 0, INDETERMINATE: 0}
        self.last_error: str | None = None

    def plan(self, t_wall: float) -> int:
        second = int(t_wall)
        self.open.setdefault(second, Bucket(second)).planned += 1
        self.totals["planned"] += 1
        return second

    def done(self, second: int, outcome: str, latency_ms: float | None = None, error: str | None = None) -> None:
        b = self.open[second]
        setattr(b, outcome, getattr(b, outcome) + 1)
        self.totals[outcome] += 1
        if outcome == OK and latency_ms is not None:
            b.latencies_ms.append(latency_ms)
            if latency_ms > self.slo_ms:
                b.over_slo += 1
        if error:
            self.last_error = error

    def flush(self, before_wall: float | None = None) -> int:
        """Write every finished bucket that started before `before_wall` (all finished when None)."""
        ready = sorted(s for s, b in self.open.items()
                       if b.outstanding == 0 and (before_wall is None or s + 1 <= before_wall))
        if not ready:
            return 0
        with open(self.out, "a") as f:
            for second in ready:
                f.write(json.dumps(self.open.pop(second).line()) + "\n")
        return len(ready)


def read_buckets(path: Path, after_wall: float | None = None) -> list[dict]:
    """The lines of a buckets file with t_wall > after_wall (all when None), oldest first; a line
    being written right now is left for the next read."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            bucket = json.loads(line)
        except ValueError:
            continue
        if isinstance(bucket, dict) and (after_wall is None or bucket.get("t_wall", 0) > after_wall):
            out.append(bucket)
    return out
