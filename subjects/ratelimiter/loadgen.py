"""Load generator: steady and bursty traffic over keys with configured limits.

Run: ``python -m subjects.ratelimiter.loadgen --seed-url http://127.0.0.1:17101 [--seed-url ...]
[--duration-s 21600] [--scale 1.0] [--status-file PATH] [--source-address A]``.

It configures its keys' limits once (``PUT /api/limits/KEY`` on a reachable node), then spreads
requests round-robin over the nodes that ``GET /api/nodes`` lists as ``up`` (so draining and
down nodes get none), re-reading the registry every few seconds. It stops after the duration or
on SIGTERM/SIGINT, and writes its progress to the status file (JSON, rewritten every 2 s).

Traffic (per second, times --scale):
- ``hot:steady``  limit 20 per 1000 ms, 30 req/s: over its limit all the time.
- ``hot:bursty``  limit 50 per 2000 ms, 5 req/s plus a burst of 80 every 10 s.
- ``warm:1..3``   limit 100 per 1000 ms, 10 req/s each: never limited when all is well.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

log = logging.getLogger("ratelimiter.loadgen")

TICK_S = 0.1
REFRESH_S = 2.0
STATUS_EVERY_S = 2.0
MAX_IN_FLIGHT = 64
REQUEST_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class KeyLoad:
    key: str
    limit: int
    window_ms: int
    rate: float  # requests per second, steady
    burst: int = 0  # extra requests sent at once every burst_every_s
    burst_every_s: float = 0.0


PROFILE = (
    KeyLoad("hot:steady", 20, 1000, 30.0),
    KeyLoad("hot:bursty", 50, 2000, 5.0, burst=80, burst_every_s=10.0),
    KeyLoad("warm:1", 100, 1000, 10.0),
    KeyLoad("warm:2", 100, 1000, 10.0),
    KeyLoad("warm:3", 100, 1000, 10.0),
)


class LoadGen:
    def __init__(
        self,
        seeds: list[str],
        profile: tuple[KeyLoad, ...],
        scale: float,
        status_file: Path | None,
        source_address: str | None = None,
    ) -> None:
        self.seeds = seeds
        self.source_address = source_address
        self.profile = profile
        self.scale = scale
        self.status_file = status_file
        self.targets: list[str] = []
        self.rr = itertools.count()
        self.results: dict[str, int] = {"allowed": 0, "denied": 0, "error": 0}
        self.by_node: dict[str, int] = {}
        self.sent = 0
        self.started = time.time()
        self.last_error: str | None = None
        self.in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.tasks: set[asyncio.Task] = set()

    async def _get_json(self, session: aiohttp.ClientSession, url: str) -> dict | None:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            async with session.get(url) as r:
                if r.status == 200:
                    return await r.json()
        return None

    async def refresh(self, session: aiohttp.ClientSession) -> None:
        """Targets = the `up` nodes of the registry, asked of any node that answers."""
        known = list(dict.fromkeys(self.targets + self.seeds))
        for base in known:
            body = await self._get_json(session, f"{base}/api/nodes")
            if body is not None:
                self.targets = [
                    n["url"] for n in body.get("nodes", []) if n.get("state") == "up" and n.get("url")
                ]
                return
        self.targets = []
        self.last_error = "no node answers /api/nodes"

    async def configure(self, session: aiohttp.ClientSession) -> bool:
        for base in self.targets or self.seeds:
            ok = True
            for k in self.profile:
                try:
                    async with session.put(
                        f"{base}/api/limits/{k.key}", json={"limit": k.limit, "window_ms": k.window_ms}
                    ) as r:
                        ok = ok and r.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
            if ok:
                return True
        return False

    async def one(self, session: aiohttp.ClientSession, key: str) -> None:
        if not self.targets:
            self.results["error"] += 1
            return
        url = self.targets[next(self.rr) % len(self.targets)]
        self.sent += 1
        try:
            async with self.in_flight, session.post(f"{url}/check", json={"key": key}) as r:
                body = await r.json()
                node = body.get("node", "?")
                self.by_node[node] = self.by_node.get(node, 0) + 1
                self.results["allowed" if r.status == 200 else "denied" if r.status == 429 else "error"] += 1
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            self.results["error"] += 1
            self.last_error = f"{url}: {type(e).__name__}: {e}"

    def fire(self, session: aiohttp.ClientSession, key: str, n: int) -> None:
        for _ in range(n):
            if len(self.tasks) >= MAX_IN_FLIGHT * 4:
                self.results["error"] += 1  # shed load rather than queue without bound
                continue
            task = asyncio.create_task(self.one(session, key))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def write_status(self, done: bool = False) -> None:
        if self.status_file is None:
            return
        status = {
            "pid": os.getpid(),
            "started": self.started,
            "elapsed_s": round(time.time() - self.started, 1),
            "sent": self.sent,
            "results": dict(self.results),
            "by_node": dict(self.by_node),
            "targets": list(self.targets),
            "last_error": self.last_error,
            "done": done,
        }
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        os.replace(tmp, self.status_file)

    async def run(self, duration_s: float, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        local = (self.source_address, 0) if self.source_address else None
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(local_addr=local)) as session:
            await self.refresh(session)
            configured = await self.configure(session)
            end = time.monotonic() + duration_s
            next_refresh = next_status = time.monotonic()
            credit = dict.fromkeys((k.key for k in self.profile), 0.0)
            last_burst = dict.fromkeys((k.key for k in self.profile), float("-inf"))  # first burst at once
            while not stop.is_set() and time.monotonic() < end:
                now = time.monotonic()
                if now >= next_refresh:
                    await self.refresh(session)
                    if not configured:
                        configured = await self.configure(session)
                    next_refresh = now + REFRESH_S
                for k in self.profile:
                    credit[k.key] += k.rate * self.scale * TICK_S
                    n = int(credit[k.key])
                    credit[k.key] -= n
                    if k.burst and now - last_burst[k.key] >= k.burst_every_s:
                        n += int(k.burst * self.scale)
                        last_burst[k.key] = now
                    self.fire(session, k.key, n)
                if now >= next_status:
                    self.write_status()
                    next_status = now + STATUS_EVERY_S
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=TICK_S)
            if self.tasks:
                await asyncio.wait(list(self.tasks), timeout=REQUEST_TIMEOUT_S + 1)
        self.write_status(done=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m subjects.ratelimiter.loadgen", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--seed-url", action="append", required=True, metavar="URL", help="a node to discover the others from"
    )
    p.add_argument("--duration-s", type=float, default=6 * 3600, help="stop after this long (default: 6 h)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every rate and burst (default: 1.0)")
    p.add_argument("--status-file", type=Path, help="JSON progress file, rewritten every 2 s")
    p.add_argument("--source-address", metavar="ADDRESS", help="local address to send from (default: any)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    if not 0 < a.duration_s <= 7 * 24 * 3600:
        p.error("--duration-s must be positive and at most a week")
    if not 0 < a.scale <= 100:
        p.error("--scale must be in (0, 100]")
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s loadgen %(levelname)s: %(message)s")
    gen = LoadGen([u.rstrip("/") for u in a.seed_url], PROFILE, a.scale, a.status_file, a.source_address)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("sending to %s for %.0fs at scale %.2f", ", ".join(gen.seeds), a.duration_s, a.scale)
        await gen.run(a.duration_s, stop)
        log.info("done: sent %d, %s", gen.sent, gen.results)

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    sys.exit(main())
