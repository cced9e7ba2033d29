"""Load generator for the etcd lab: puts and serializable reads, open-loop at a fixed rate.

Run: ``python -m subjects.etcd.loadgen --endpoint URL [--endpoint URL ...] [--rate 20]
[--duration-s 21600] [--status-file PATH]``.

Open loop: an operation starts every 1/rate seconds whether or not earlier ones finished (a
closed loop would slow down with the cluster and hide its latency). Half are puts of a small
value to one of 1,000 keys under ``/load/``, half serializable reads of one. Each goes to the
next endpoint in turn; when that member refuses or times out it is tried once on the next one, as
etcd's own client fails over. At most MAX_IN_FLIGHT operations wait at once; beyond that an
operation counts as an error (``overloaded``) instead of piling up.

Every second it writes the status file (JSON): the last WINDOW_S seconds' ``qps`` (successful
operations per second), ``error_rate`` and ``p99_ms``, totals, errors by kind, and the last error.
With ``--buckets-dir`` it also writes one line a second to ``DIR/buckets.jsonl`` for the evaluation
harness (`subjects.openloop`): operations planned in that second, ok, fail and indeterminate (a put
that timed out: it may have been applied), latency from the planned start, and how many ok ones
were slower than ``--slo-ms``. It stops after the duration, on SIGTERM/SIGINT, or when the process
``--parent-pid`` names is no longer its parent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import time
from collections import Counter, deque
from pathlib import Path

from subjects.etcd.client import EtcdClient, EtcdError
from subjects.openloop import BUCKETS_FILE, FAIL, INDETERMINATE, OK, Buckets

KEYS = 1000
VALUE_BYTES = 64
REQUEST_TIMEOUT_S = 2.0
MAX_IN_FLIGHT = 200
WINDOW_S = 5.0
STATUS_EVERY_S = 1.0


class LoadGen:
    def __init__(self, endpoints: list[str], rate: float, status_file: Path | None, seed: int = 0,
                 buckets: Buckets | None = None, parent_pid: int | None = None):
        self.endpoints = endpoints
        self.buckets = buckets
        self.parent_pid = parent_pid
        self.start_mono, self.start_wall = time.monotonic(), time.time()
        self.rate = rate
        self.status_file = status_file
        self.client = EtcdClient(timeout=REQUEST_TIMEOUT_S)
        self.rng = random.Random(seed)
        self.next_endpoint = 0
        self.in_flight = 0
        self.sent = self.ok = self.failed = 0
        self.errors: Counter[str] = Counter()
        self.last_error: str | None = None
        self.recent: deque[tuple[float, bool, float]] = deque()  # (finished at, ok, latency s)
        self.started = time.time()
        self.tasks: set[asyncio.Task[None]] = set()

    def _endpoint(self) -> int:
        i = self.next_endpoint
        self.next_endpoint = (i + 1) % len(self.endpoints)
        return i

    async def _once(self, url: str, put: bool, key: str) -> None:
        if put:
            await self.client.put(url, key, os.urandom(VALUE_BYTES // 2).hex())
        else:
            await self.client.get(url, key, serializable=True)

    async def operation(self, planned: float | None = None, second: int | None = None) -> None:
        put = self.rng.random() < 0.5
        key = f"/load/k{self.rng.randrange(KEYS):04d}"
        first = self._endpoint()
        t0 = time.monotonic()
        ok = False
        outcome = INDETERMINATE  # until it is known: a cancelled operation never heard back
        try:
            for attempt in (first, (first + 1) % len(self.endpoints)):
                try:
                    await self._once(self.endpoints[attempt], put, key)
                    ok, outcome = True, OK
                    break
                except EtcdError as e:
                    kind = (f"HTTP {e.status}: {e.message}" if e.kind == "http" else e.kind)
                    self.last_error = f"{'put' if put else 'get'} {self.endpoints[attempt]}: {e.message}"
                    outcome = INDETERMINATE if put and e.kind == "timeout" else FAIL
                    if not e.unreachable or len(self.endpoints) == 1 or attempt != first:
                        self.errors[kind[:80]] += 1
                        break
        finally:
            self.in_flight -= 1
            if self.buckets is not None and second is not None:
                latency_ms = (time.monotonic() - (planned if planned is not None else t0)) * 1000
                self.buckets.done(second, outcome, latency_ms, None if ok else self.last_error)
        self.ok += ok
        self.failed += not ok
        self.recent.append((time.monotonic(), ok, time.monotonic() - t0))

    def start_one(self, planned: float | None = None) -> None:
        """Start one operation, due at the monotonic time `planned` (now when None)."""
        self.sent += 1
        second = None
        if self.buckets is not None:
            due = planned if planned is not None else time.monotonic()
            second = self.buckets.plan(self.start_wall + (due - self.start_mono))
        if self.in_flight >= MAX_IN_FLIGHT:
            self.failed += 1
            self.errors["overloaded"] += 1
            self.recent.append((time.monotonic(), False, 0.0))
            if second is not None:
                self.buckets.done(second, FAIL, error="overloaded")
            return
        self.in_flight += 1
        task = asyncio.create_task(self.operation(planned, second))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def figures(self) -> dict:
        now = time.monotonic()
        while self.recent and self.recent[0][0] < now - WINDOW_S:
            self.recent.popleft()
        done = list(self.recent)
        window = min(WINDOW_S, max(0.001, time.time() - self.started))
        oks = [lat for _, ok, lat in done if ok]
        latencies = sorted(lat for _, _, lat in done)
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000 if latencies else None
        return {
            "updated_at": time.time(), "started_at": self.started, "window_s": window, "rate": self.rate,
            "qps": round(len(oks) / window, 2),
            "error_rate": round((len(done) - len(oks)) / len(done), 4) if done else 0.0,
            "p99_ms": round(p99, 2) if p99 is not None else None,
            "sent": self.sent, "ok": self.ok, "failed": self.failed, "in_flight": self.in_flight,
            "errors": dict(self.errors.most_common(10)), "last_error": self.last_error,
            "endpoints": self.endpoints,
        }

    def write_status(self, done: bool = False) -> None:
        if self.status_file is None:
            return
        body = {**self.figures(), "done": done}
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, self.status_file)

    async def run(self, duration_s: float, stop: asyncio.Event) -> None:
        period = 1.0 / self.rate
        start = time.monotonic()
        self.start_mono, self.start_wall = start, time.time()
        next_op = start
        next_status = start
        while not stop.is_set() and time.monotonic() - start < duration_s:
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                break  # whoever started it is gone: nobody reads what it measures
            now = time.monotonic()
            while next_op <= now:
                self.start_one(next_op)
                next_op += period
            if now >= next_status:
                self.write_status()
                if self.buckets is not None:  # a fail-over can take two request timeouts
                    self.buckets.flush(time.time() - 2 * REQUEST_TIMEOUT_S - 0.5)
                next_status += STATUS_EVERY_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, min(next_op, next_status) - time.monotonic()))
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.buckets is not None:
            self.buckets.flush()
        self.write_status(done=True)
        await self.client.aclose()


async def amain(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    buckets = Buckets(Path(args.buckets_dir) / BUCKETS_FILE, args.slo_ms) if args.buckets_dir else None
    gen = LoadGen(args.endpoint, args.rate, Path(args.status_file) if args.status_file else None, args.seed,
                  buckets, args.parent_pid)
    await gen.run(args.duration_s, stop)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m subjects.etcd.loadgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", action="append", required=True, help="a member's client URL (repeatable)")
    p.add_argument("--rate", type=float, default=20.0, help="operations per second (default: 20)")
    p.add_argument("--duration-s", type=float, default=6 * 3600, help="stop after this long (default: 6 h)")
    p.add_argument("--status-file", help="where to write the figures every second")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--buckets-dir", metavar="DIR", help="write per-second outcomes to DIR/buckets.jsonl")
    p.add_argument("--slo-ms", type=float, default=200.0, help="latency SLO for the buckets' over_slo (default: 200)")
    p.add_argument("--parent-pid", type=int, help="stop when this process is no longer the parent")
    args = p.parse_args()
    if not 0 < args.rate <= 1000:
        p.error("--rate must be between 0 and 1000")
    if args.duration_s <= 0:
        p.error("--duration-s must be positive")
    if args.buckets_dir:
        Path(args.buckets_dir).mkdir(parents=True, exist_ok=True)
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
