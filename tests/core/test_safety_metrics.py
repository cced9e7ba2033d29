"""Missing metrics are not health (issue 10, defect 3): a check without data is "not evaluated" (it
neither opens nor clears a ticket), data that stays missing is a ticket of its own, and the agent's
verification needs as many clean, evaluated observations as the monitor."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from operator_tui.actions.engine import ActionEngine
from operator_tui.agent.embedded import EmbeddedDiagnoser
from operator_tui.agent.loop import Agent
from operator_tui.monitor import Monitor
from operator_tui.store import Store, TickWrite
from subjects.base import (
    CheckResult,
    Invariant,
    Node,
    NodeState,
    NotEvaluated,
    Observation,
    Severity,
    Violation,
    Workload,
)
from subjects.ratelimiter.invariants import Thresholds as RLThresholds
from subjects.ratelimiter.invariants import build_invariants as rl_invariants
from subjects.tikv.invariants import Thresholds, build_invariants
from subjects.tikv.prometheus_config import scrape_config
from subjects.tikv.sim import SimThread
from tests.core.conftest import has_active, make_subject, tick_until
from tests.prometheus_server import prometheus


def tikv_check(name: str) -> Invariant:
    return next(i for i in build_invariants(Thresholds(slo_p99_ms=50.0)) if i.name == name)


def store(sid: str, **metrics: float) -> Node:
    return Node(id=sid, kind="store", state=NodeState.up, state_detail="Up", metrics={"probe_ok": 1.0, **metrics})


def test_tikv_latency_without_metrics_is_not_evaluated() -> None:
    high_latency = tikv_check("high_latency")
    down = Observation(subject="tikv", workload=Workload(), details={
        "metrics_source": "prometheus", "metrics_error": "Prometheus at http://127.0.0.1:9 is unreachable"})
    result = high_latency.evaluate(down, [])
    assert result.violations == [] and not result.evaluated("cluster")
    assert result.not_evaluated[0].source == "metrics:prometheus" and "unreachable" in result.not_evaluated[0].reason
    idle = Observation(subject="tikv", workload=Workload(qps=0.0))
    assert high_latency.evaluate(idle, []).evaluated("cluster"), "no traffic at all is a reading: nothing is slow"
    slow = Observation(subject="tikv", workload=Workload(qps=100.0, p99_ms=80.0))
    assert [v.entity for v in high_latency.evaluate(slow, []).violations] == ["cluster"]


def test_tikv_hot_store_without_a_store_reading_is_not_evaluated_for_it() -> None:
    hot_store = tikv_check("hot_store")
    obs = Observation(subject="tikv", nodes=[store("1", qps=100.0), store("2", qps=110.0), store("3", qps=90.0),
                                             store("4")],
                      details={"metrics_missing": {"4": "status port 127.0.0.1:20184 answered with a body over 8 MiB"}})
    result = hot_store.evaluate(obs, [])
    assert result.evaluated("store:1") and not result.evaluated("store:4")
    assert result.not_evaluated[0].source == "metrics:store:4"
    few = Observation(subject="tikv", nodes=[store("1", qps=900.0), store("2"), store("3")])
    assert not hot_store.evaluate(few, []).evaluated("store:1"), "two readings missing: nothing to compare with"


def test_ratelimiter_latency_of_a_node_with_unreadable_metrics_is_not_evaluated() -> None:
    high_latency = next(i for i in rl_invariants(RLThresholds()) if i.name == "high_latency")

    def node(nid: str, **metrics: float) -> Node:
        return Node(id=nid, kind="node", state=NodeState.up, metrics={"probe_ok": 1.0, **metrics})

    dead = Node(id="n3", kind="node", state=NodeState.down, state_detail="not answering: refused",
                metrics={"probe_ok": 0.0})
    obs = Observation(subject="ratelimiter", nodes=[node("n1", p99_ms=5.0, latency_samples=100.0), node("n2"), dead],
                      details={"metrics_missing": {"n2": "GET /metrics answered HTTP 500"}})
    result = high_latency.evaluate(obs, [])
    assert result.evaluated("node:n1") and not result.evaluated("node:n2") and not result.evaluated("node:n3")
    assert result.not_evaluated[0].source == "metrics:node:n2" and "HTTP 500" in result.not_evaluated[0].reason
    # the dead node's gap is its node_down ticket's, not a metrics_missing one
    assert [(n.entity, n.explained_by) for n in result.not_evaluated] == [("node:n2", None), ("node:n3", "node_down")]


@dataclass
class Gauge:
    """A toy subject with one latency gauge that can go missing."""

    name: str = "toy"
    display: str = "toy gauge"
    p99: float | None = 90.0
    observed: int = 0
    readings: list[float | None] = field(default_factory=list)  # served in order, then `p99` for good

    async def observe(self) -> Observation:
        self.observed += 1
        value = self.readings.pop(0) if self.readings else self.p99
        return Observation(subject="toy", workload=Workload(p99_ms=value),
                           details={} if value is not None else {"metrics_error": "scrape failed"})

    def invariants(self) -> list[Invariant]:
        def check(obs: Observation, _h: Any) -> list[Violation] | CheckResult:
            p99 = obs.workload.p99_ms
            if p99 is None:
                return CheckResult(not_evaluated=[NotEvaluated(reason="scrape failed", entity="cluster",
                                                               source="metrics:gauge")])
            return [Violation(invariant="slow", entity="cluster", severity=Severity.warning, summary=f"p99 {p99}")
                    ] if p99 > 50 else []
        return [Invariant("slow", "p99 under 50", Severity.warning, "cluster", check)]

    def runbooks(self) -> dict[str, Any]:
        return {}

    def actions(self) -> list[Any]:
        return []

    async def aclose(self) -> None:
        return None


async def test_missing_data_neither_clears_nor_opens_and_becomes_a_ticket(store: Store) -> None:
    gauge = Gauge()
    run_id = await store.start_run("test", "toy")
    monitor = Monitor(gauge, store, run_id, interval=0.05, clear_after=2, missing_grace_s=0.2)
    report = await monitor.tick()
    [slow] = report.opened
    gauge.p99 = None
    for _ in range(8):
        report = await monitor.tick()
        await asyncio.sleep(0.05)  # the missing-data grace is 0.2 s
    active = {(t.invariant, t.entity) for t in report.active}
    assert ("slow", "cluster") in active, "missing data must not resolve the latency ticket"
    assert ("metrics_missing", "metrics:gauge") in active, "data that stays missing is a ticket of its own"
    missing = next(t for t in report.active if t.invariant == "metrics_missing")
    assert "slow@cluster" in missing.evidence["not_evaluated"]
    # Clear, missing, clear: the gap is not a clear reading, so clear_after=2 needs two in a row.
    gauge.p99, gauge.readings = 10.0, [10.0, None]
    await monitor.tick()
    await monitor.tick()
    report = await monitor.tick()
    assert ("slow", "cluster") in {(t.invariant, t.entity) for t in report.active}
    report = await monitor.tick()
    resolved = {t.invariant for t in report.resolved}
    assert resolved == {"slow", "metrics_missing"} or (await store.get_ticket(slow.id)).status == "resolved"
    assert (await store.get_ticket(missing.id)).status == "resolved"


@dataclass
class Box(Gauge):
    """The gauge on a node that can die: a dead node has no gauge, and `reachable` says it is dead."""

    down: bool = False

    async def observe(self) -> Observation:
        if self.down:
            return Observation(subject="toy", workload=Workload(), details={"down": True})
        return await super().observe()

    def invariants(self) -> list[Invariant]:
        def reachable(obs: Observation, _h: Any) -> list[Violation]:
            return [Violation(invariant="reachable", entity="cluster", severity=Severity.critical,
                              summary="down")] if obs.details.get("down") else []

        def slow(obs: Observation, _h: Any) -> list[Violation] | CheckResult:
            if obs.details.get("down"):
                return CheckResult(not_evaluated=[NotEvaluated(reason="down", entity="cluster", source="metrics:box",
                                                               explained_by="reachable")])
            if obs.workload.p99_ms is None:
                return CheckResult(not_evaluated=[NotEvaluated(reason="scrape failed", entity="cluster",
                                                               source="metrics:box")])
            return [Violation(invariant="slow", entity="cluster", severity=Severity.warning,
                              summary=f"p99 {obs.workload.p99_ms}")] if obs.workload.p99_ms > 50 else []
        return [Invariant("reachable", "it answers", Severity.critical, "cluster", reachable),
                Invariant("slow", "p99 under 50", Severity.warning, "cluster", slow)]


async def test_a_dead_node_keeps_its_latency_ticket_and_its_own_ticket_explains_the_gap(store: Store) -> None:
    """A node that dies has no metrics: its latency ticket must not resolve as if it healed, and the
    gap is its `reachable` ticket's, not a `metrics_missing` one; data missing with the node up is."""
    box = Box()
    monitor = Monitor(box, store, await store.start_run("test", "toy"), interval=0.05, clear_after=2,
                      missing_grace_s=0.2)
    [slow] = (await monitor.tick()).opened
    box.down = True
    for _ in range(8):
        report = await monitor.tick()
        await asyncio.sleep(0.05)
    active = {(t.invariant, t.entity) for t in report.active}
    assert active == {("slow", "cluster"), ("reachable", "cluster")}, active
    assert (await store.get_ticket(slow.id)).status != "resolved"
    box.down, box.p99 = False, None  # back, but its metrics are not
    for _ in range(8):
        report = await monitor.tick()
        await asyncio.sleep(0.05)
    assert ("metrics_missing", "metrics:box") in {(t.invariant, t.entity) for t in report.active}


async def test_verification_needs_clear_after_clean_evaluated_observations(store: Store) -> None:
    """One good reading between bad or missing ones is not a fix."""
    gauge = Gauge(p99=10.0)
    run_id = await store.start_run("test", "toy")
    result = await store.apply_tick(TickWrite(run_id=run_id, open=[Violation(
        invariant="slow", entity="cluster", severity=Severity.warning, summary="p99 90")]))
    ticket = result.opened[0]
    engine = ActionEngine(store, gauge, run_id)
    agent = Agent(store, gauge, engine, run_id, EmbeddedDiagnoser(), clear_after=3, verify_interval_s=0.0)
    gauge.readings = [10.0, 90.0]
    verdict = await agent.verify(ticket)
    assert not verdict["holds"] and "still violated" in verdict["summary"]
    gauge.readings = [10.0, None, None, None, None, None, None, None, None]
    verdict = await agent.verify(ticket)
    assert not verdict["holds"] and "cannot verify" in verdict["summary"], verdict
    gauge.readings = []
    verdict = await agent.verify(ticket)
    assert verdict["holds"] and verdict["clean_observations"] == 3 and gauge.observed >= 3 + 2 + 9


@pytest.mark.slow
async def test_prometheus_stopped_latency_ticket_stays_open_and_metrics_ticket_opens(sim: SimThread,
                                                                                      store: Store) -> None:
    """Must show: with Prometheus stopped, a latency ticket stays open and a metrics ticket opens."""
    stores = httpx.get(f"{sim.pd_url}/pd/api/v1/stores").json()["stores"]
    config = scrape_config(sim.pd_url.removeprefix("http://"), [s["store"]["status_address"] for s in stores])
    subject = None
    try:
        with prometheus(config) as url:
            # An SLO no cluster meets: the latency ticket opens as soon as Prometheus has the histograms.
            subject = await make_subject(sim.pd_url, prometheus_url=url, prometheus_window="5s",
                                         thresholds={"slo_p99_ms": 0.001, "graces": {"high_latency": 0.0}})
            monitor = Monitor(subject, store, await store.start_run("test", "tikv"), interval=0.5, clear_after=2,
                              missing_grace_s=2.0)
            await tick_until(monitor, has_active("high_latency", "cluster"), timeout=90)
        # Prometheus is stopped now.
        report = await tick_until(monitor, has_active("metrics_missing", "metrics:prometheus"), timeout=30)
        assert "Prometheus" in report.observation.details["metrics_error"]
        for _ in range(6):
            report = await monitor.tick()
        active = {(t.invariant, t.entity): t for t in report.active}
        assert ("high_latency", "cluster") in active, "the latency ticket stays open while Prometheus is down"
        missing = active[("metrics_missing", "metrics:prometheus")]
        assert "high_latency@cluster" in missing.evidence["not_evaluated"]
        assert not [t for t in await store.list_tickets() if t.invariant == "high_latency" and t.status == "resolved"]
    finally:
        if subject is not None:
            await subject.aclose()
