"""The embedded agent end to end against the live simulator:
fault -> ticket -> diagnosis -> action -> verification -> resolved (or escalated, with reasons)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from operator_tui.config import AgentSettings
from operator_tui.policy import set_approval, set_mode
from operator_tui.store import Store
from subjects.tikv.sim import SimThread
from tests.core.conftest import fault, make_subject, revert
from tests.operator_harness import Running, run_operator

FAST_GRACES = {"leftover_evict_scheduler": 1.0, "leader_imbalance": 2.0, "slow_store": 1.0, "hot_store": 2.0,
               "low_space": 1.0}


@contextlib.asynccontextmanager
async def operator(sim: SimThread, store: Store, *, graces: dict[str, float] | None = None,
                   agent_settings: AgentSettings | None = None,
                   runbook_settings: dict[str, Any] | None = None) -> AsyncIterator[Running]:
    subject = await make_subject(sim.pd_url, host_agent=sim.host_agent_url,
                                 thresholds={"graces": {**FAST_GRACES, **(graces or {})}})
    try:
        async with run_operator(subject, store, agent_settings=agent_settings,
                                runbook_settings=runbook_settings) as running:
            yield running
    finally:
        await subject.aclose()


async def test_leftover_evict_scheduler_is_removed_and_verified(sim: SimThread, store: Store) -> None:
    async with operator(sim, store) as op:
        r = httpx.post(f"{sim.pd_url}/pd/api/v1/schedulers", json={"name": "evict-leader-scheduler", "store_id": 3})
        assert r.status_code == 200
        ticket = await op.ticket("leftover_evict_scheduler", "resolved", timeout=60)
    assert ticket.entity == "store:3"
    assert ticket.resolution["by"] == "agent"
    verification = ticket.resolution["verification"]
    assert verification["holds"] is True and verification["invariant"] == "leftover_evict_scheduler"
    [action] = await store.list_actions(ticket_id=ticket.id)
    assert (action.name, action.params, action.state) == ("remove_scheduler", {"name": "evict-leader-scheduler-3"},
                                                           "succeeded")
    [session] = await store.sessions_for_ticket(ticket.id)
    d = session.diagnosis
    assert d["recommended_actions"][0]["name"] == "remove_scheduler"
    assert len(d["alternatives"]) == 3 and sum(a["verdict"] == "chosen" for a in d["alternatives"]) == 1
    assert all(a["verdict"].startswith("rejected") for a in d["alternatives"] if a["verdict"] != "chosen")
    assert 0 < d["confidence"] <= 1 and d["evidence"]
    kinds = [s.kind for s in await store.session_steps(session.id)]
    assert kinds == ["context", "diagnosis", "actions", "action_results", "verification"]
    assert "evict-leader-scheduler" not in httpx.get(f"{sim.pd_url}/pd/api/v1/schedulers").json()


async def test_killed_store_is_restarted_through_host_control(sim: SimThread, store: Store) -> None:
    async with operator(sim, store) as op:
        await fault(sim.admin_url, {"kind": "kill_store", "store_id": 2})
        ticket = await op.ticket("store_unreachable", "resolved", timeout=60)
    assert ticket.resolution["by"] == "agent"
    actions = await store.list_actions(ticket_id=ticket.id)
    assert [(a.name, a.params, a.state) for a in actions] == [("restart_node", {"store_id": 2}, "succeeded")]
    hosts = {h["id"]: h for h in httpx.get(f"{sim.host_agent_url}/host/v1/stores").json()}
    assert hosts[2]["running"]


async def test_slow_store_is_drained_and_the_undrain_is_scheduled(sim: SimThread, store: Store) -> None:
    # PD v8.5's evict-slow-store-scheduler would evict the leaders itself; this is the cluster
    # without it (older PD, or disabled), where the operator has to act.
    assert httpx.delete(f"{sim.pd_url}/pd/api/v1/schedulers/evict-slow-store-scheduler").status_code == 200
    async with operator(sim, store, runbook_settings={"undrain_after_s": 4.0}) as op:
        fid = await fault(sim.admin_url, {"kind": "slow_store", "store_id": 4, "latency_ms": 300})
        ticket = await op.ticket("slow_store", "resolved", timeout=90)
        actions = list(reversed(await store.list_actions(ticket_id=ticket.id)))
        assert [a.name for a in actions] == ["drain_store", "undrain_store"]
        assert actions[0].state == "succeeded" and actions[1].delay_s == 4.0
        assert actions[1].workflow_id == actions[0].workflow_id and actions[1].step == 1
        assert httpx.get(f"{sim.pd_url}/pd/api/v1/store/4").json()["status"].get("leader_count", 0) == 0
        await revert(sim.admin_url, fid)

        async def undrained() -> Any:
            a = await store.get_action(actions[1].id)
            return a if a.state in ("succeeded", "failed") else None

        final = await op.until(undrained, timeout=60, what="scheduled undrain")
    assert final.state == "succeeded"
    states = [t.to_state for t in await store.action_transitions(final.id)]
    assert "scheduled" in states and states.index("scheduled") < states.index("executing")


async def test_leader_skew_is_rebalanced(sim: SimThread, store: Store) -> None:
    async with operator(sim, store) as op:
        await fault(sim.admin_url, {"kind": "skew_leaders", "store_id": 1})
        ticket = await op.ticket("leader_imbalance", "resolved", timeout=90)
    names = [a.name for a in await store.list_actions(ticket_id=ticket.id)]
    assert "add_scheduler" in names
    assert "balance-leader-scheduler" in httpx.get(f"{sim.pd_url}/pd/api/v1/schedulers").json()


async def test_hot_store_region_is_split_and_moved(sim: SimThread, store: Store) -> None:
    region = httpx.get(f"{sim.pd_url}/pd/api/v1/region/id/10").json()
    async with operator(sim, store) as op:
        await fault(sim.admin_url, {"kind": "hot_region", "region_id": region["id"], "qps": 60000})
        ticket = await op.ticket("hot_store", timeout=60)
        [session] = await op.until(lambda: store.sessions_for_ticket(ticket.id), timeout=30, what="a session")

        async def diagnosed() -> Any:
            s = await store.get_session(session.id)
            return s if s.diagnosis else None

        s = await op.until(diagnosed, timeout=30, what="a diagnosis")
    steps = [a["name"] for a in s.diagnosis["recommended_actions"]]
    assert steps[0] == "split_region"
    assert s.diagnosis["recommended_actions"][0]["params"]["region_id"] == region["id"]


async def test_first_attempt_fails_second_succeeds(sim: SimThread, store: Store) -> None:
    """A script keeps re-adding the scheduler once: the first fix does not hold, the second does."""
    async with operator(sim, store, agent_settings=AgentSettings(verify_delay_s=3.0, max_attempts=3)) as op:
        httpx.post(f"{sim.pd_url}/pd/api/v1/schedulers", json={"name": "evict-leader-scheduler", "store_id": 2})

        async def first_removal() -> Any:
            done = [a for a in await store.list_actions() if a.name == "remove_scheduler" and a.state == "succeeded"]
            return done or None

        await op.until(first_removal, timeout=60, what="first removal")
        httpx.post(f"{sim.pd_url}/pd/api/v1/schedulers", json={"name": "evict-leader-scheduler", "store_id": 2})
        ticket = await op.ticket("leftover_evict_scheduler", "resolved", timeout=90)
    sessions = await store.sessions_for_ticket(ticket.id)
    assert [s.status for s in sessions] == ["not_fixed", "resolved"]
    assert [s.attempt for s in sessions] == [1, 2]
    assert "still violated" in sessions[0].outcome
    assert ticket.resolution["by"] == "agent"


async def test_observe_mode_only_diagnoses(sim: SimThread, store: Store) -> None:
    await set_mode(store, "observe", "human:test")
    async with operator(sim, store) as op:
        httpx.post(f"{sim.pd_url}/pd/api/v1/schedulers", json={"name": "evict-leader-scheduler", "store_id": 3})
        ticket = await op.ticket("leftover_evict_scheduler", "escalated", timeout=60)
        [session] = await store.sessions_for_ticket(ticket.id)
        assert session.diagnosis["recommended_actions"][0]["name"] == "remove_scheduler"
        await asyncio.sleep(3)  # escalated tickets are a human's: never claimed again
        assert len(await store.sessions_for_ticket(ticket.id)) == 1
    assert await store.list_actions() == []
    assert "evict-leader-scheduler" in httpx.get(f"{sim.pd_url}/pd/api/v1/schedulers").json()


async def test_pd_down_escalates_without_acting(sim: SimThread, store: Store) -> None:
    async with operator(sim, store) as op:
        fid = await fault(sim.admin_url, {"kind": "pd_down"})
        ticket = await op.ticket("pd_unreachable", "escalated", timeout=30)
        await revert(sim.admin_url, fid)
        resolved = await op.ticket("pd_unreachable", "resolved", timeout=30)
    assert resolved.id == ticket.id and resolved.resolution["by"] == "monitor"
    assert await store.list_actions() == []


async def test_rejected_fix_is_escalated_not_retried(sim: SimThread, store: Store) -> None:
    from operator_tui.actions import decisions

    await set_approval(store, "all", "human:test")
    async with operator(sim, store) as op:
        httpx.post(f"{sim.pd_url}/pd/api/v1/schedulers", json={"name": "evict-leader-scheduler", "store_id": 5})

        async def awaiting() -> Any:
            return [a for a in await store.list_actions() if a.state == "awaiting_approval"] or None

        [action] = await op.until(awaiting, timeout=60, what="an approval request")
        await decisions.reject(store, action.id, "human:alice", "we are mid-maintenance")
        ticket = await op.ticket("leftover_evict_scheduler", "escalated", timeout=30)
    assert len(await store.sessions_for_ticket(ticket.id)) == 1
    events = [e for e in await store.ticket_events(ticket.id) if e.kind == "escalated"]
    assert "we are mid-maintenance" in events[-1].detail["reason"]


async def test_stopping_interrupts_a_waiting_session(sim: SimThread, store: Store) -> None:
    await set_approval(store, "all", "human:test")
    async with operator(sim, store) as op:
        httpx.post(f"{sim.pd_url}/pd/api/v1/schedulers", json={"name": "evict-leader-scheduler", "store_id": 5})
        ticket = await op.ticket("leftover_evict_scheduler", "investigating", timeout=60)
    [session] = await store.sessions_for_ticket(ticket.id)
    assert session.status == "interrupted"
    assert (await store.get_ticket(ticket.id)).status == "escalated"


async def test_agent_events_reach_listeners(sim: SimThread, store: Store) -> None:
    async with operator(sim, store) as op:
        await fault(sim.admin_url, {"kind": "kill_store", "store_id": 3})
        await op.ticket("store_unreachable", "resolved", timeout=60)
        kinds = [e.kind for e in op.events]
    assert kinds[:2] == ["context", "diagnosis"] and kinds[-1] == "end"
