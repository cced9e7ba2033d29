"""Every TiKV invariant fires on its fault against the live simulator, and clears when the
fault is reverted. An invariant that cannot fire is worse than none."""

from __future__ import annotations

import pytest

from operator_tui.monitor import Monitor
from operator_tui.store import Store
from subjects.base import TicketStatus
from subjects.tikv.sim import SimThread
from tests.core.conftest import fault, has_active, make_subject, none_active, pd_call, revert, tick_until


async def test_killed_store_is_a_ticket_at_once_and_resolves_after_revert(sim: SimThread, monitor: Monitor,
                                                                           store: Store) -> None:
    await tick_until(monitor, lambda r: r.observation.workload.qps is not None)
    fid = await fault(sim.admin_url, {"kind": "kill_store", "store_id": 2})
    report = await tick_until(monitor, has_active("store_unreachable", "store:2"), timeout=5)
    [ticket] = [t for t in report.active if t.invariant == "store_unreachable"]
    assert ticket.evidence["store_id"] == 2
    # PD calls it Disconnected after 20 s (simulated): same incident, so no second ticket.
    await tick_until(monitor, lambda r: "Disconnected" in (r.observation.node("2", "store").state_detail), timeout=10)
    assert not any(t.invariant == "store_disconnected" for t in (await monitor.tick()).active)
    await revert(sim.admin_url, fid)
    await tick_until(monitor, none_active("store_unreachable"), timeout=10)
    resolved = await store.get_ticket(ticket.id)
    assert resolved.status == TicketStatus.resolved and resolved.resolution["by"] == "monitor"
    assert resolved.occurrences >= 2


async def test_store_down_after_max_store_down_time(sim: SimThread, monitor: Monitor) -> None:
    assert (await pd_call(sim.pd_url, "POST", "config", {"max-store-down-time": "40s"})).status_code == 200
    fid = await fault(sim.admin_url, {"kind": "kill_store", "store_id": 3})
    await tick_until(monitor, has_active("store_down", "store:3"), timeout=20)
    await revert(sim.admin_url, fid)
    await tick_until(monitor, none_active("store_down"), timeout=15)


async def test_partitioned_store_is_disconnected_not_unreachable(sim: SimThread, monitor: Monitor) -> None:
    fid = await fault(sim.admin_url, {"kind": "partition_store", "store_id": 4})
    report = await tick_until(monitor, has_active("store_disconnected", "store:4"), timeout=15)
    assert not any(t.invariant == "store_unreachable" for t in report.active)
    await revert(sim.admin_url, fid)
    await tick_until(monitor, none_active("store_disconnected"), timeout=15)


async def test_regions_under_replicated_once_peers_are_down(sim: SimThread, monitor: Monitor) -> None:
    # down peers are reported after max-peer-down-duration (10 min simulated = 30 s at time-scale 20)
    fid = await fault(sim.admin_url, {"kind": "kill_store", "store_id": 1})
    report = await tick_until(monitor, has_active("regions_under_replicated", "cluster"), timeout=60)
    [ticket] = [t for t in report.active if t.invariant == "regions_under_replicated"]
    assert ticket.evidence["down_peer_regions"] > 0
    assert ticket.evidence["examples"]
    await revert(sim.admin_url, fid)
    await tick_until(monitor, none_active("regions_under_replicated"), timeout=60)


async def test_leftover_evict_scheduler(sim: SimThread, monitor: Monitor) -> None:
    r = await pd_call(sim.pd_url, "POST", "schedulers", {"name": "evict-leader-scheduler", "store_id": 3})
    assert r.status_code == 200, r.text
    report = await tick_until(monitor, has_active("leftover_evict_scheduler", "store:3"), timeout=20)
    assert not any(t.invariant == "leader_imbalance" for t in report.active)  # evicted stores are not counted
    assert (await pd_call(sim.pd_url, "DELETE", "schedulers/evict-leader-scheduler-3")).status_code == 200
    await tick_until(monitor, none_active("leftover_evict_scheduler"), timeout=20)


async def test_leader_imbalance_from_skewed_leaders(sim: SimThread, monitor: Monitor) -> None:
    fid = await fault(sim.admin_url, {"kind": "skew_leaders", "store_id": 5})
    report = await tick_until(monitor, has_active("leader_imbalance", "cluster"), timeout=20)
    [ticket] = [t for t in report.active if t.invariant == "leader_imbalance"]
    assert ticket.evidence["most_loaded_store"] == 5
    await revert(sim.admin_url, fid)
    await tick_until(monitor, none_active("leader_imbalance"), timeout=60)


async def test_slow_store_while_it_leads(sim: SimThread, monitor: Monitor) -> None:
    fid = await fault(sim.admin_url, {"kind": "slow_store", "store_id": 2, "latency_ms": 300})
    report = await tick_until(monitor, has_active("slow_store", "store:2"), timeout=30)
    [ticket] = [t for t in report.active if t.invariant == "slow_store"]
    assert ticket.evidence["slow_score"] >= 80
    # the cluster-wide latency symptom is the same incident: inhibited while slow_store fires
    assert not any(t.invariant == "high_latency" for t in report.active)
    await revert(sim.admin_url, fid)
    await tick_until(monitor, none_active("slow_store"), timeout=40)


async def test_low_space(sim: SimThread, monitor: Monitor) -> None:
    fid = await fault(sim.admin_url, {"kind": "disk_full", "store_id": 1, "used_ratio": 0.9})
    report = await tick_until(monitor, has_active("low_space", "store:1"), timeout=20)
    [ticket] = [t for t in report.active if t.invariant == "low_space"]
    assert ticket.evidence["available_ratio"] < 0.2
    await revert(sim.admin_url, fid)
    await tick_until(monitor, none_active("low_space"), timeout=20)


async def test_hot_store(sim: SimThread, monitor: Monitor) -> None:
    region = (await pd_call(sim.pd_url, "GET", "region/id/10")).json()
    leader = region["leader"]["store_id"]
    fid = await fault(sim.admin_url, {"kind": "hot_region", "region_id": 10, "qps": 60000})
    report = await tick_until(monitor, has_active("hot_store", f"store:{leader}"), timeout=30)
    [ticket] = [t for t in report.active if t.invariant == "hot_store"]
    assert ticket.evidence["qps"] > ticket.evidence["median_qps_others"]
    await revert(sim.admin_url, fid)
    await tick_until(monitor, none_active("hot_store"), timeout=30)


async def test_high_latency_over_the_slo(sim: SimThread, store: Store) -> None:
    subject = await make_subject(sim.pd_url, thresholds={"slo_p99_ms": 0.5, "graces": {"high_latency": 0.5}})
    try:
        monitor = Monitor(subject, store, await store.start_run("test", "tikv"), interval=0.25, clear_after=2)
        report = await tick_until(monitor, has_active("high_latency", "cluster"), timeout=20)
        [ticket] = [t for t in report.active if t.invariant == "high_latency"]
        assert ticket.evidence["p99_ms"] > 0.5
    finally:
        await subject.aclose()


async def test_pd_unreachable_opens_its_own_ticket_and_resolves_nothing_else(sim: SimThread, monitor: Monitor,
                                                                                store: Store) -> None:
    kill = await fault(sim.admin_url, {"kind": "kill_store", "store_id": 2})
    await tick_until(monitor, has_active("store_unreachable", "store:2"), timeout=5)
    await revert(sim.admin_url, kill)  # the store is back, but PD goes away before we can see it
    down = await fault(sim.admin_url, {"kind": "pd_down"})
    report = await tick_until(monitor, has_active("pd_unreachable", "pd"), timeout=10)
    for _ in range(6):  # however long PD is away, other tickets stay as they were
        report = await monitor.tick()
    assert not report.observation.reachable
    assert has_active("store_unreachable", "store:2")(report)
    assert all(n.state == "unknown" for n in report.observation.nodes)
    await revert(sim.admin_url, down)
    report = await tick_until(monitor, none_active("pd_unreachable"), timeout=10)
    await tick_until(monitor, none_active("store_unreachable"), timeout=10)


async def test_pd_garbage_is_unreachable_not_all_clear(sim: SimThread, monitor: Monitor) -> None:
    fid = await fault(sim.admin_url, {"kind": "pd_garbage"})
    report = await tick_until(monitor, has_active("pd_unreachable", "pd"), timeout=10)
    assert "not JSON" in report.observation.error or "unreadable" in report.observation.error
    await revert(sim.admin_url, fid)
    await tick_until(monitor, none_active("pd_unreachable"), timeout=10)


async def test_hanging_status_port_is_a_clear_timeout(sim: SimThread, monitor: Monitor) -> None:
    fid = await fault(sim.admin_url, {"kind": "status_hang", "store_id": 5})
    report = await tick_until(monitor, has_active("store_unreachable", "store:5"), timeout=10)
    assert "did not answer within" in report.observation.node("5", "store").state_detail
    assert report.tick_ms < 5000  # a hanging store costs one probe timeout, not a stuck monitor
    await revert(sim.admin_url, fid)
    await tick_until(monitor, none_active("store_unreachable"), timeout=10)


@pytest.mark.parametrize("style", ["aggregate", "per_store"])
async def test_both_pd_metrics_label_styles(style: str) -> None:
    from subjects.tikv.sim import start_sim_thread
    from tests.core.conftest import sim_config

    thread = start_sim_thread(sim_config(pd_metrics_style=style))
    try:
        subject = await make_subject(thread.pd_url)
        try:
            obs = await subject.observe()
            assert obs.metrics["cluster:store-up-count"] == 5
            assert obs.metrics["cluster:region-count"] == 360  # 120 regions x 3 peers, summed over stores
        finally:
            await subject.aclose()
    finally:
        thread.stop()
