"""Helpers shared by the rate limiter tests (ports, polling, process checks, labs)."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from subjects import processes
from subjects.processes import ProcessRecord, free_port
from subjects.ratelimiter.addresses import AddressPlan
from subjects.ratelimiter.lab import PROXY_OFFSET, NodeOptions, RateLimiterLab, free_lab_ports

# Short registry TTL and Redis timeout so that failures show within a second or two.
FAST_NODES = NodeOptions(heartbeat_ms=200, node_ttl_ms=1000, redis_timeout_ms=300)
__all__ = ["free_lab_ports", "free_port"]  # for the tests that import them from here


def free_block_lab(nodes: int, octets: range = range(150, 251), base: int | None = None) -> tuple[str, int]:
    """An address block ("127.B.0", B drawn from `octets`) and a base port (`base`, or drawn) whose
    lab endpoints are all free there; the lab's Redis takes the base port itself."""
    rng = random.Random()
    wanted_base = base
    low, high = processes.FREE_PORT_RANGE
    for _ in range(500):
        block = f"127.{rng.choice(octets)}.0"
        base = wanted_base or rng.randrange(low, high - PROXY_OFFSET - nodes - 1)
        plan = AddressPlan(block)
        wanted = [(plan.redis, base), (plan.proxy, base + PROXY_OFFSET)]
        wanted += [(plan.node(i), base + i) for i in range(1, nodes + 1)]
        wanted += [(plan.link(i), base + PROXY_OFFSET + i) for i in range(1, nodes + 1)]
        if all(processes.port_free(port, host) for host, port in wanted):
            return block, base
    raise RuntimeError("no free address block found")


def wait_until(
    predicate: Callable[[], object], timeout_s: float = 20.0, interval_s: float = 0.05, what: str = ""
):
    """Poll until `predicate()` is truthy and return its value; fail after a generous deadline."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the condition may fail transiently while things settle
            last_error = e
        time.sleep(interval_s)
    raise AssertionError(
        f"timed out after {timeout_s}s waiting for {what or predicate}; last error: {last_error}"
    )


def assert_dead(records: list[ProcessRecord]) -> None:
    alive = [f"{r.name} (pid {r.pid})" for r in records if processes.is_live(r)]
    assert not alive, f"processes left running: {alive}"


def assert_ports_closed(ports: list[int], host: str = "127.0.0.1") -> None:
    """Nothing listens on host:port any more. By address: labs on other loopback addresses (parallel
    evaluation slots) may use the same port numbers."""
    assert_endpoints_closed([(host, port) for port in ports])


def assert_endpoints_closed(endpoints: list[tuple[str, int]]) -> None:
    def closed() -> bool:
        table = processes.listening()
        return not any(processes.is_listening(host, port, table) for host, port in endpoints)

    wait_until(closed, 10.0, what=f"{endpoints} to close")


def make_lab(tmp: Path, nodes: int = 3, options: NodeOptions = FAST_NODES) -> RateLimiterLab:
    lab = RateLimiterLab(tmp)
    redis_port, base = free_lab_ports(nodes)
    lab.up(nodes=nodes, redis_port=redis_port, base_port=base, load=False, node_options=options)
    return lab


def teardown_lab(lab: RateLimiterLab) -> None:
    state = lab.state
    records = list(state.processes.values())
    endpoints = list(state.endpoints().values())
    try:
        lab.down()
    finally:
        # Whatever happened above, no process of this lab outlives the test.
        for rec in records:
            if processes.is_live(rec):
                processes.send(rec, signal.SIGCONT)
                processes.send(rec, signal.SIGKILL)
                processes.wait_dead(rec, 5.0)
    assert_dead(records)
    assert_endpoints_closed(endpoints)
    assert not lab.state_path.exists()


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def unique_key(prefix: str) -> str:
    return f"{prefix}:{random.randrange(10**9)}"
