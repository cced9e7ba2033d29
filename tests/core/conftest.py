"""Core tests run against the live simulator over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from operator_tui.monitor import Monitor, TickReport
from operator_tui.store import Store
from subjects import registry
from subjects.tikv.sim import SimConfig, SimThread, start_sim_thread
from subjects.tikv.subject import TiKVSubject


def sim_config(**overrides: Any) -> SimConfig:
    base = {"host": "127.0.0.1", "port": 0, "stores": 5, "regions": 120, "replicas": 3, "time_scale": 20.0, "seed": 7}
    return SimConfig(**{**base, **overrides})


@pytest.fixture
def sim() -> Iterator[SimThread]:
    thread = start_sim_thread(sim_config())
    try:
        yield thread
    finally:
        thread.stop()


async def make_subject(pd_url: str, **options: Any) -> TiKVSubject:
    return await registry.build_subject("tikv", {"pd_url": pd_url, **options})


@pytest.fixture
async def subject(sim: SimThread) -> AsyncIterator[TiKVSubject]:
    # Short graces so faults show quickly; high_latency keeps its default so that, as in production,
    # the node-level cause (slow or hot store) opens first and inhibits the cluster-wide symptom.
    s = await make_subject(sim.pd_url, host_agent=sim.host_agent_url, thresholds={"graces": {k: 0.0 for k in (
        "regions_under_replicated", "leader_imbalance", "leftover_evict_scheduler", "low_space", "slow_store",
        "hot_store")}})
    try:
        yield s
    finally:
        await s.aclose()


async def fault(admin_url: str, body: dict[str, Any]) -> str:
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{admin_url}/sim/v1/faults", json=body)
        assert r.status_code == 200, r.text
        return r.json()["id"]


async def revert(admin_url: str, fault_id: str) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.delete(f"{admin_url}/sim/v1/faults/{fault_id}")
        assert r.status_code == 200, r.text


async def pd_call(pd_url: str, method: str, path: str, body: Any = None) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.request(method, f"{pd_url}/pd/api/v1/{path}", json=body)


async def tick_until(monitor: Monitor, predicate: Callable[[TickReport], bool], timeout: float = 30.0,
                     interval: float = 0.25) -> TickReport:
    """Tick the monitor until the predicate holds; fail with what the last tick saw."""
    deadline = time.monotonic() + timeout
    report = None
    while time.monotonic() < deadline:
        report = await monitor.tick()
        if predicate(report):
            return report
        await asyncio.sleep(interval)
    seen = [(v.invariant, v.entity) for v in report.violations] if report else None
    active = [(t.invariant, t.entity, t.status) for t in report.active] if report else None
    raise AssertionError(f"condition not met within {timeout} s; violations {seen}, active tickets {active}")


def has_active(invariant: str, entity: str | None = None) -> Callable[[TickReport], bool]:
    return lambda r: any(t.invariant == invariant and (entity is None or t.entity == entity) for t in r.active)


def none_active(invariant: str) -> Callable[[TickReport], bool]:
    return lambda r: not any(t.invariant == invariant for t in r.active)


Waiter = Callable[..., Awaitable[TickReport]]


@pytest.fixture
async def monitor(store: Store, subject: TiKVSubject) -> Monitor:
    run_id = await store.start_run("test", "tikv")
    return Monitor(subject, store, run_id, interval=0.25, clear_after=2)
