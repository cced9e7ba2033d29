"""An open-loop workload for evaluation trials: rate limiter checks at planned times, whatever the answers.

Run: ``python -m subjects.ratelimiter.workload --redis URL --node n1=URL [--node ...] --rate 50
--seed 7 --out DIR [--slo-ms 100] [--keys 8] [--source-address A] [--max-duration-s 1800]
[--parent-pid PID]``.

- **Open loop.** Send times are fixed in advance: Poisson arrivals at ``--rate`` drawn from
  ``--seed``. A request is sent at its planned time even when earlier ones are still waiting, and
  its latency counts from the planned time, not from when it could be sent, so a stall shows as
  latency instead of as fewer requests (no coordinated omission; wrk2 does the same).
- **Clients behind a load balancer.** Requests go round-robin to the nodes the registry in Redis
  lists ``up`` (re-read every second; the last known list while Redis does not answer), as a load
  balancer that health-checks through the registry would send them.
- **Outcomes.** ok: the node decided with Redis (200 allowed, 429 denied) or, failing open, admitted
  (200); fail: refused, a connect timeout, a 5xx, a fail-closed denial, no node up, or more than
  ``MAX_IN_FLIGHT`` requests outstanding; indeterminate: sent but no answer in time (whether it
  was counted is unknown, Jepsen's "info").
- **Buckets.** Per second of planned send time: ``{"t_wall", "planned", "ok", "fail",
  "indeterminate", "p50_ms", "p99_ms", "over_slo"}`` (latency quantiles over ok requests; over_slo:
  ok requests slower than ``--slo-ms``), appended to ``DIR/buckets.jsonl`` once every request of
  that second has its outcome, so planned = ok + fail + indeterminate in every line.
- **Bounded.** At most 1000 requests a second and ``--max-duration-s`` (default 30 min); it also
  stops on SIGTERM/SIGINT and when its parent process (``--parent-pid``) is gone, then waits for
  what is in flight (at most the request timeout) and writes the last buckets. ``DIR/status.json``
  says how far it got.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import signal
import sys
import time
from pathlib import Path

import aiohttp

from subjects.openloop import BUCKETS_FILE, FAIL, INDETERMINATE, OK, Buckets, arrivals

log = logging.getLogger("ratelimiter.workload")

MAX_RATE = 1000.0
MAX_IN_FLIGHT = 512
REQUEST_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 1.0
REFRESH_S = 1.0
FLUSH_S = 0.25
KEY_LIMIT_HEADROOM = 4.0  # keys' limits allow this many times their expected rate: denials stay rare
STATUS_FILE = "status.json"


class Workload:
    def __init__(self, nodes: dict[str, str], redis_url: str, rate: float, seed: int, out_dir: Path,
                 slo_ms: float = 100.0, keys: int = 8, source_address: str | None = None,
                 max_duration_s: float = 1800.0, parent_pid: int | None = None) -> None:
        self.nodes = nodes
        self.redis_url = redis_url
        self.rate = rate
        self.seed = seed
        self.out_dir = out_dir
        self.keys = [f"wl:{i}" for i in range(keys)]
        self.key_limit = max(1, math.ceil(rate / keys * KEY_LIMIT_HEADROOM))
        self.source_address = source_address
        self.max_duration_s = max_duration_s
        self.parent_pid = parent_pid
        self.buckets = Buckets(out_dir / BUCKETS_FILE, slo_ms)
        self.targets: list[str] = list(nodes.values())
        self.in_flight: set[asyncio.Task] = set()
        self.started_wall = time.time()
        self.stopped_reason: str | None = None

    # -- where to send -------------------------------------------------------------------------

    async def refresh_targets(self) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        from subjects.ratelimiter.service import schema

        client = aioredis.Redis.from_url(self.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            seconds, micros = await client.time()
            rows = schema.registry_rows(await client.hgetall(schema.NODES_KEY),
                                        await client.hgetall(schema.HEARTBEATS_KEY),
                                        int(seconds) * 1000 + int(micros) // 1000)
        except (RedisError, OSError):
            return  # keep sending where we sent: a load balancer keeps its last view
        finally:
            await client.aclose()
        up = [self.nodes[r["id"]] for r in rows if r["state"] == "up" and r["id"] in self.nodes]
        self.targets = up

    async def configure(self, session: aiohttp.ClientSession) -> None:
        """Give the workload's keys their limits (once, through any node that answers)."""
        for url in self.nodes.values():
            try:
                for key in self.keys:
                    async with session.put(f"{url}/api/limits/{key}",
                                           json={"limit": self.key_limit, "window_ms": 1000}) as r:
                        if r.status != 200:
                            raise aiohttp.ClientError(f"HTTP {r.status}")
                return
            except (aiohttp.ClientError, TimeoutError) as e:
                self.buckets.last_error = f"configuring limits on {url}: {e}"
        raise RuntimeError(f"no node accepted the workload's limits: {self.buckets.last_error}")

    # -- one request ---------------------------------------------------------------------------

    async def one(self, session: aiohttp.ClientSession, url: str, key: str, second: int, planned_mono: float) -> None:
        outcome, error = FAIL, None
        try:
            async with session.post(f"{url}/check", json={"key": key}) as r:
                body = await r.json(content_type=None)
                result = body.get("result") if isinstance(body, dict) else None
                if (r.status, result) in ((200, "allowed"), (429, "denied"), (200, "allowed_fail_open")):
                    outcome = OK
                else:
                    error = f"{url}: HTTP {r.status} {result or ''}".rstrip()
        except aiohttp.ConnectionTimeoutError as e:
            error = f"{url}: connect timeout {e}"
        except TimeoutError:
            outcome, error = INDETERMINATE, f"{url}: no answer within {REQUEST_TIMEOUT_S:g} s"
        except (aiohttp.ClientError, ValueError, OSError) as e:
            error = f"{url}: {type(e).__name__}: {e}"
        latency_ms = (time.monotonic() - planned_mono) * 1000
        self.buckets.done(second, outcome, latency_ms, error)

    # -- the loop --------------------------------------------------------------------------------

    def write_status(self, done: bool = False) -> None:
        status = {"pid": os.getpid(), "started_wall": self.started_wall, "rate": self.rate, "seed": self.seed,
                  "targets": self.targets, "totals": self.buckets.totals, "in_flight": len(self.in_flight),
                  "last_error": self.buckets.last_error, "done": done, "stopped": self.stopped_reason}
        tmp = self.out_dir / (STATUS_FILE + ".tmp")
        tmp.write_text(json.dumps(status))
        os.replace(tmp, self.out_dir / STATUS_FILE)

    def _should_stop(self, stop: asyncio.Event) -> str | None:
        if stop.is_set():
            return "signal"
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            return "parent gone"
        return None

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S)
        local = (self.source_address, 0) if self.source_address else None
        connector = aiohttp.TCPConnector(local_addr=local, limit=MAX_IN_FLIGHT, force_close=False)
        rng = random.Random(f"{self.seed}:keys")
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            await self.configure(session)
            await self.refresh_targets()
            start_mono, start_wall = time.monotonic(), time.time()
            self.started_wall = start_wall
            plan = arrivals(self.rate, self.seed, self.max_duration_s)
            next_refresh = next_flush = start_mono
            turn = 0
            for offset in plan:
                planned_mono = start_mono + offset
                while (now := time.monotonic()) < planned_mono:
                    if (reason := self._should_stop(stop)) is not None:
                        self.stopped_reason = reason
                        break
                    if now >= next_refresh:
                        await self.refresh_targets()
                        next_refresh = now + REFRESH_S
                    if now >= next_flush:
                        self.buckets.flush(time.time() - REQUEST_TIMEOUT_S - 0.5)
                        self.write_status()
                        next_flush = now + FLUSH_S
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=max(0.0, min(planned_mono - now, FLUSH_S)))
                if self.stopped_reason:
                    break
                second = self.buckets.plan(start_wall + offset)
                if not self.targets:
                    self.buckets.done(second, FAIL, error="no node is up in the registry")
                    continue
                if len(self.in_flight) >= MAX_IN_FLIGHT:
                    self.buckets.done(second, FAIL, error="client overloaded: too many requests outstanding")
                    continue
                url = self.targets[turn % len(self.targets)]
                turn += 1
                task = asyncio.create_task(self.one(session, url, rng.choice(self.keys), second, planned_mono))
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)
            else:
                self.stopped_reason = "max duration"
            if self.in_flight:
                await asyncio.wait(list(self.in_flight), timeout=REQUEST_TIMEOUT_S + 1)
        self.buckets.flush()
        self.write_status(done=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m subjects.ratelimiter.workload",
                                description=__doc__.split("\n")[0])
    p.add_argument("--redis", required=True, metavar="URL", help="the lab's Redis (its registry says which nodes are up)")
    p.add_argument("--node", action="append", required=True, metavar="ID=URL", help="a node (repeat)")
    p.add_argument("--rate", type=float, default=50.0, help="planned requests per second (default: 50)")
    p.add_argument("--seed", type=int, default=0, help="seed of the arrival times and keys")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="where buckets.jsonl and status.json go")
    p.add_argument("--slo-ms", type=float, default=100.0, help="latency SLO for over_slo (default: 100)")
    p.add_argument("--keys", type=int, default=8, help="number of rate-limit keys (default: 8)")
    p.add_argument("--source-address", metavar="ADDRESS", help="local address to send from")
    p.add_argument("--max-duration-s", type=float, default=1800.0, help="stop after this long (default: 1800)")
    p.add_argument("--parent-pid", type=int, help="stop when this process is no longer the parent")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    if not 0 < a.rate <= MAX_RATE:
        p.error(f"--rate must be in (0, {MAX_RATE:g}]")
    if not 0 < a.max_duration_s <= 24 * 3600:
        p.error("--max-duration-s must be positive and at most a day")
    if not 1 <= a.keys <= 1000 or a.slo_ms <= 0:
        p.error("--keys must be in 1..1000 and --slo-ms positive")
    nodes = {}
    for item in a.node:
        node_id, sep, url = item.partition("=")
        if not sep or not node_id or not url.startswith("http"):
            p.error(f"--node: expected ID=URL, got {item!r}")
        nodes[node_id] = url.rstrip("/")
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s workload %(levelname)s: %(message)s")
    a.out.mkdir(parents=True, exist_ok=True)
    work = Workload(nodes, a.redis, a.rate, a.seed, a.out, a.slo_ms, a.keys, a.source_address, a.max_duration_s,
                    a.parent_pid)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("%.0f requests/s to %s (seed %d)", a.rate, ", ".join(nodes), a.seed)
        await work.run(stop)
        log.info("stopped (%s): %s", work.stopped_reason, work.buckets.totals)

    try:
        asyncio.run(go())
    except RuntimeError as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
