"""The Prometheus path: a real `prometheus` scrapes the simulator; the subject reads PromQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from operator_tui.monitor import Monitor
from operator_tui.store import Store
from subjects.tikv.prometheus_config import scrape_config
from subjects.tikv.sim import SimThread, start_sim_thread
from tests.core.conftest import fault, has_active, make_subject, none_active, revert, sim_config, tick_until
from tests.prometheus_server import prometheus


@pytest.fixture
def sim() -> Iterator[SimThread]:
    thread = start_sim_thread(sim_config(time_scale=10.0))
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture
def prom(sim: SimThread) -> Iterator[str]:
    stores = httpx.get(f"{sim.pd_url}/pd/api/v1/stores").json()["stores"]
    config = scrape_config(sim.pd_url.removeprefix("http://"), [s["store"]["status_address"] for s in stores])
    with prometheus(config) as url:
        yield url


async def test_metrics_through_promql_and_invariants_fire(sim: SimThread, prom: str, store: Store) -> None:
    subject = await make_subject(sim.pd_url, prometheus_url=prom, prometheus_window="5s",
                                 thresholds={"graces": {"low_space": 0.0, "slow_store": 0.0}})
    try:
        monitor = Monitor(subject, store, await store.start_run("test", "tikv"), interval=0.5, clear_after=2)
        report = await tick_until(monitor, lambda r: r.observation.workload.p99_ms is not None
                                  and all("qps" in n.metrics for n in r.observation.nodes
                                          if n.kind == "store"), timeout=90)
        node = report.observation.node("1", "store")
        assert node.metrics["qps"] > 0 and node.metrics["capacity_bytes"] > 0
        assert report.observation.workload.p99_ms > 0
        assert "metrics_error" not in report.observation.details

        fid = await fault(sim.admin_url, {"kind": "disk_full", "store_id": 2, "used_ratio": 0.95})
        await tick_until(monitor, has_active("low_space", "store:2"), timeout=30)
        await revert(sim.admin_url, fid)
        await tick_until(monitor, none_active("low_space"), timeout=30)

        kill = await fault(sim.admin_url, {"kind": "kill_store", "store_id": 3})
        started = time.monotonic()
        await tick_until(monitor, has_active("store_unreachable", "store:3"), timeout=10)
        assert time.monotonic() - started < 10  # the direct probe, not Prometheus's `up`, is the signal
        await revert(sim.admin_url, kill)
    finally:
        await subject.aclose()


async def test_prometheus_query_errors_are_reported_not_fatal(sim: SimThread, store: Store) -> None:
    # a Prometheus that is not there: metrics are missing and said so; liveness and PD still work
    subject = await make_subject(sim.pd_url, prometheus_url="http://127.0.0.1:9")
    try:
        obs = await subject.observe()
        assert obs.reachable
        assert "Prometheus" in obs.details["metrics_error"]
        assert all(n.metrics.get("probe_ok") == 1.0 for n in obs.nodes if n.kind == "store")
    finally:
        await subject.aclose()


async def test_bad_promql_window_is_a_clear_error(sim: SimThread, prom: str) -> None:
    subject = await make_subject(sim.pd_url, prometheus_url=prom, prometheus_window="five minutes")
    try:
        await asyncio.sleep(1)
        obs = await subject.observe()
        assert obs.reachable and "Prometheus query failed" in obs.details["metrics_error"]
    finally:
        await subject.aclose()
