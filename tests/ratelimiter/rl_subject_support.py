"""Helpers for the rate limiter subject's tests: a lab under load, cleanliness checks, polling the
subject, and the whole operator (monitor + engine + agent) in process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from rl_support import free_lab_ports, healthy, wait_until

from subjects import processes
from subjects.base import Observation, Violation
from subjects.ratelimiter.lab import NodeOptions, RateLimiterLab
from subjects.ratelimiter.subject import RateLimiterSubject, build
from tests.operator_harness import Running

# Failures show within a second; a Redis timeout long enough that a 250 ms link delay is slow, not dead.
LAB_NODES = NodeOptions(heartbeat_ms=200, node_ttl_ms=1500, redis_timeout_ms=1000)
CLEAN_CONFIG = ("closed", 0, False)


def make_loaded_lab(tmp: Path, nodes: int = 3, load: bool = True, **options: Any) -> RateLimiterLab:
    lab = RateLimiterLab(tmp)
    redis_port, base = free_lab_ports(nodes)
    lab.up(nodes=nodes, redis_port=redis_port, base_port=base, load=load, node_options=LAB_NODES, **options)
    return lab


def restore(lab: RateLimiterLab) -> None:
    """Put the lab back as `lab up` left it, whatever a failed test did to it."""
    redis_rec = lab.process("redis")
    if processes.process_state(redis_rec) == processes.PAUSED:
        processes.send(redis_rec, signal.SIGCONT)
    with contextlib.suppress(Exception):
        client = lab.redis()
        try:
            client.execute_command("CLIENT", "UNPAUSE")
        finally:
            client.close()
    with contextlib.suppress(Exception):
        lab.set_link("*", "pass", 0)
    for node_id in lab.node_ids():
        state = lab.node_process(node_id)["state"]
        if state == processes.PAUSED:
            lab.resume_node(node_id)
        elif state != processes.RUNNING:
            lab.start_node(node_id)
    for node_id, url in lab.node_urls().items():
        wait_until(lambda url=url: healthy(url), 30.0, what=f"{node_id} healthy")
        httpx.post(f"{url}/admin/config", json={"fail_mode": "closed", "cache_ttl_ms": 0}, timeout=5.0)
        httpx.post(f"{url}/admin/undrain", timeout=5.0)


def assert_clean(lab: RateLimiterLab) -> None:
    """Nothing of a fault left: processes running, links pass, Redis takes writes, nodes as started."""
    for name, rec in lab.state.processes.items():
        assert processes.process_state(rec) == processes.RUNNING, name
    for name, link in lab.links().items():
        assert (link["mode"], link["delay_ms"]) == ("pass", 0), name
    for node_id, url in lab.node_urls().items():
        wait_until(lambda url=url: healthy(url), 30.0, what=f"{node_id} healthy")
        config = httpx.get(f"{url}/admin/config", timeout=5.0).json()
        assert (config["fail_mode"], config["cache_ttl_ms"], config["draining"]) == CLEAN_CONFIG, node_id
    client = lab.redis()
    try:
        client.set("tests:probe", "1", px=1000)  # a write goes through: Redis is neither stopped nor paused
    finally:
        client.close()


async def subject_for(lab: RateLimiterLab, **options: Any) -> RateLimiterSubject:
    return await build({"lab_dir": str(lab.run_dir), **options})


async def observe_until(subject: RateLimiterSubject, predicate: Callable[[Observation], Any], timeout: float = 30.0,
                        what: str = "condition", interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    obs = None
    while time.monotonic() < deadline:
        obs = await subject.observe()
        value = predicate(obs)
        if value:
            return value
        await asyncio.sleep(interval)
    nodes = [(n.entity, n.state.value, n.state_detail) for n in obs.nodes] if obs else None
    raise AssertionError(f"{what} not reached in {timeout} s; last observation: reachable={obs and obs.reachable} "
                         f"error={obs and obs.error} nodes={nodes} redis={obs and obs.details.get('redis')}")


def violations(subject: RateLimiterSubject, obs: Observation, invariant: str) -> list[Violation]:
    inv = next(i for i in subject.invariants() if i.name == invariant)
    if not obs.reachable and not inv.on_unreachable:
        return []
    return inv.check(obs, [])


def firing(subject: RateLimiterSubject, invariant: str, entity: str) -> Callable[[Observation], Violation | None]:
    def probe(obs: Observation) -> Violation | None:
        return next((v for v in violations(subject, obs, invariant) if v.entity == entity), None)
    return probe


def clear(subject: RateLimiterSubject, invariant: str, entity: str | None = None) -> Callable[[Observation], bool]:
    def probe(obs: Observation) -> bool:
        if not obs.reachable:
            return False
        return not [v for v in violations(subject, obs, invariant) if entity is None or v.entity == entity]
    return probe


# -- faults, off the event loop ---------------------------------------------------------------


async def inject(lab: RateLimiterLab, kind: str, target: str | None = None, **params: Any) -> dict:
    from subjects.ratelimiter import faults

    return await asyncio.to_thread(faults.inject, lab, kind, target, params)


async def revert(lab: RateLimiterLab, record: dict) -> dict:
    from subjects.ratelimiter import faults

    report = await asyncio.to_thread(faults.revert, lab, record)
    assert report["ok"], report
    return report


# -- the operator in process ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def operator(lab: RateLimiterLab, store: Any, *, thresholds: dict[str, Any] | None = None,
                   verify_delay_s: float = 3.0, runbook_settings: dict[str, Any] | None = None,
                   max_attempts: int = 3) -> AsyncIterator[Running]:
    from operator_tui.config import AgentSettings
    from tests.operator_harness import run_operator

    subject = await subject_for(lab, thresholds=thresholds or {})
    try:
        async with run_operator(subject, store, interval=1.0, runbook_settings=runbook_settings,
                                agent_settings=AgentSettings(verify_delay_s=verify_delay_s,
                                                             max_attempts=max_attempts)) as running:
            yield running
    finally:
        await subject.aclose()
