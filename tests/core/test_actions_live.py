"""The action engine against the live simulator: every TiKV action's effect and PD error paths,
the lifecycle under each policy, workflows, scheduling, retries, the kill switch, crash safety."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from operator_tui.actions import decisions
from operator_tui.actions.engine import ActionEngine, ActionRequestError
from operator_tui.actions.states import ActionState
from operator_tui.clock import Clock
from operator_tui.config import ActionSettings
from operator_tui.policy import set_approval, set_mode
from operator_tui.store import Store
from subjects.base import ActionRequest
from subjects.tikv.sim import SimThread, start_sim_thread
from subjects.tikv.subject import TiKVSubject
from tests.core.conftest import make_subject, sim_config


def region(pd_url: str, region_id: int) -> dict[str, Any]:
    return httpx.get(f"{pd_url}/pd/api/v1/region/id/{region_id}").json()


def regions(pd_url: str) -> list[dict[str, Any]]:
    return httpx.get(f"{pd_url}/pd/api/v1/regions").json()["regions"]


def leave_replicas_alone(pd_url: str) -> None:
    """Stop PD's replica checker from undoing an added peer (so add_peer has a lasting effect)."""
    r = httpx.post(f"{pd_url}/pd/api/v1/config", json={"enable-remove-extra-replica": "false",
                                                        "enable-make-up-replica": "false"})
    assert r.status_code == 200, r.text


def region_without_peer_on(pd_url: str, store_id: int) -> dict[str, Any]:
    return next(r for r in regions(pd_url) if store_id not in {p["store_id"] for p in r["peers"]}
                and r["leader"].get("store_id"))


@pytest.fixture
async def engine(store: Store, subject: TiKVSubject) -> AsyncIterator[ActionEngine]:
    run_id = await store.start_run("test", "tikv")
    e = ActionEngine(store, subject, run_id, ActionSettings(max_retries=2, backoff_base_s=0.05), poll_interval=0.05)
    await e.start()
    try:
        yield e
    finally:
        await e.stop()


async def run_one(engine: ActionEngine, name: str, params: dict[str, Any], actor: str = "human:test",
                  timeout: float = 60) -> Any:
    [record] = await engine.submit([ActionRequest(name=name, params=params)], actor=actor)
    [final] = await engine.wait_for([record.id], timeout=timeout)
    return final


async def test_transfer_leader_moves_the_leader(sim: SimThread, engine: ActionEngine, store: Store) -> None:
    r = region(sim.pd_url, 10)
    target = next(p["store_id"] for p in r["peers"] if p["store_id"] != r["leader"]["store_id"])
    final = await run_one(engine, "transfer_leader", {"region_id": 10, "to_store_id": target})
    assert final.state == "succeeded", final.reason
    assert region(sim.pd_url, 10)["leader"]["store_id"] == target
    states = [t.to_state for t in await store.action_transitions(final.id)]
    assert states == ["proposed", "validated", "approved", "executing", "succeeded"]
    ok, checked, _ = await store.verify_audit()
    assert ok and checked >= 5


async def test_transfer_leader_to_a_store_without_a_voter_fails_its_precheck(sim: SimThread,
                                                                              engine: ActionEngine) -> None:
    r = region(sim.pd_url, 10)
    outsider = next(s for s in range(1, 6) if s not in {p["store_id"] for p in r["peers"]})
    final = await run_one(engine, "transfer_leader", {"region_id": 10, "to_store_id": outsider})
    assert final.state == "failed"
    assert f"store {outsider} holds no voter of region 10" in final.reason
    assert region(sim.pd_url, 10)["leader"] == r["leader"]


async def test_unknown_action_and_bad_parameters_are_all_listed(engine: ActionEngine, store: Store) -> None:
    with pytest.raises(ActionRequestError) as e:
        engine.validate([ActionRequest(name="transfer_leader", params={"region_id": "x", "bogus": 1}),
                         ActionRequest(name="fly_to_the_moon")])
    text = "; ".join(e.value.problems)
    assert "parameter region_id" in text and "missing parameter to_store_id" in text
    assert "unknown parameter bogus" in text and "unknown action 'fly_to_the_moon'" in text
    with pytest.raises(ActionRequestError):
        await engine.submit([ActionRequest(name="transfer_leader", params={})], actor="human:test")
    assert await store.list_actions() == []  # nothing half-done
    assert (await store.list_audit())[-1].kind == "action.invalid"


async def test_peer_actions(sim: SimThread, engine: ActionEngine) -> None:
    r = region_without_peer_on(sim.pd_url, 4)
    rid = r["id"]
    refused = await run_one(engine, "add_peer", {"region_id": rid, "store_id": 4})
    assert refused.state == "failed" and "would remove the extra one again" in refused.reason
    leave_replicas_alone(sim.pd_url)
    assert (await run_one(engine, "add_peer", {"region_id": rid, "store_id": 4})).state == "succeeded"
    assert 4 in {p["store_id"] for p in region(sim.pd_url, rid)["peers"]}
    failed = await run_one(engine, "add_peer", {"region_id": rid, "store_id": 4})
    assert failed.state == "failed" and "already has a peer on store 4" in failed.reason
    assert (await run_one(engine, "remove_peer", {"region_id": rid, "store_id": 4})).state == "succeeded"
    assert 4 not in {p["store_id"] for p in region(sim.pd_url, rid)["peers"]}
    frm = next(p["store_id"] for p in region(sim.pd_url, rid)["peers"])
    moved = await run_one(engine, "transfer_peer", {"region_id": rid, "from_store_id": frm, "to_store_id": 4})
    assert moved.state == "succeeded", moved.reason
    stores = {p["store_id"] for p in region(sim.pd_url, rid)["peers"]}
    assert 4 in stores and frm not in stores


async def test_drain_and_undrain_store(sim: SimThread, engine: ActionEngine) -> None:
    drained = await run_one(engine, "drain_store", {"store_id": 2})
    assert drained.state == "succeeded", drained.reason
    assert httpx.get(f"{sim.pd_url}/pd/api/v1/store/2").json()["status"].get("leader_count", 0) == 0
    undrained = await run_one(engine, "undrain_store", {"store_id": 2})
    assert undrained.state == "succeeded"
    assert "evict-leader-scheduler" not in httpx.get(f"{sim.pd_url}/pd/api/v1/schedulers").json()
    again = await run_one(engine, "undrain_store", {"store_id": 2})  # idempotent
    assert again.state == "succeeded" and "already absent" in again.reason


async def test_schedulers_split_weight_config(sim: SimThread, engine: ActionEngine) -> None:
    removed = await run_one(engine, "remove_scheduler", {"name": "balance-leader-scheduler"})
    assert removed.state == "succeeded"
    assert "balance-leader-scheduler" not in httpx.get(f"{sim.pd_url}/pd/api/v1/schedulers").json()
    assert (await run_one(engine, "add_scheduler", {"name": "balance-leader-scheduler"})).state == "succeeded"
    before = regions(sim.pd_url)[5]
    split = await run_one(engine, "split_region", {"region_id": before["id"]})
    assert split.state == "succeeded", split.reason
    after = region(sim.pd_url, before["id"])
    assert (after["start_key"], after["end_key"]) != (before["start_key"], before["end_key"])
    weight = await run_one(engine, "set_store_weight", {"store_id": 3, "leader": 2, "region": 0.5})
    assert weight.state == "succeeded", weight.reason
    status = httpx.get(f"{sim.pd_url}/pd/api/v1/store/3").json()["status"]
    assert (status["leader_weight"], status["region_weight"]) == (2, 0.5)
    cfg = await run_one(engine, "set_config", {"key": "max-store-down-time", "value": "1h"})
    assert cfg.state == "succeeded", cfg.reason
    assert httpx.get(f"{sim.pd_url}/pd/api/v1/config/schedule").json()["max-store-down-time"] == "1h0m0s"
    with pytest.raises(ActionRequestError, match="Go duration"):
        engine.validate([ActionRequest(name="set_config", params={"key": "max-store-down-time", "value": "soon"})])
    with pytest.raises(ActionRequestError, match="key"):
        engine.validate([ActionRequest(name="set_config", params={"key": "enable-everything", "value": 1})])


async def test_remove_store_and_pd_refusals(sim: SimThread, engine: ActionEngine) -> None:
    gone = await run_one(engine, "remove_store", {"store_id": 5})
    assert gone.state == "succeeded", gone.reason
    assert httpx.get(f"{sim.pd_url}/pd/api/v1/store/5").json()["store"]["state_name"] in ("Offline", "Tombstone")
    again = await run_one(engine, "remove_store", {"store_id": 5})
    assert again.state == "failed" and ("already being removed" in again.reason or "removed" in again.reason)
    assert (await run_one(engine, "remove_store", {"store_id": 4})).state == "succeeded"
    # a third removal would leave fewer Up stores than replicas: PD refuses, we say why
    refused = await run_one(engine, "remove_store", {"store_id": 3})
    assert refused.state == "failed" and "too few Up stores" in refused.reason


async def test_restart_and_stop_node_through_host_control(sim: SimThread, engine: ActionEngine) -> None:
    stopped = await run_one(engine, "stop_node", {"store_id": 2})
    assert stopped.state == "succeeded", stopped.reason
    hosts = {h["id"]: h for h in httpx.get(f"{sim.host_agent_url}/host/v1/stores").json()}
    assert not hosts[2]["running"]
    restarted = await run_one(engine, "restart_node", {"store_id": 2})
    assert restarted.state == "succeeded", restarted.reason
    assert {h["id"]: h for h in httpx.get(f"{sim.host_agent_url}/host/v1/stores").json()}[2]["running"]


async def test_approval_all_waits_then_approve_runs_it(sim: SimThread, engine: ActionEngine, store: Store) -> None:
    await set_approval(store, "all", "human:test")
    r = region(sim.pd_url, 10)
    target = next(p["store_id"] for p in r["peers"] if p["store_id"] != r["leader"]["store_id"])
    [a] = await engine.submit([ActionRequest(name="transfer_leader", params={"region_id": 10, "to_store_id": target})],
                              actor="agent")
    [waiting] = await engine.wait_for([a.id], timeout=10, until=frozenset({ActionState.awaiting_approval}))
    assert waiting.state == "awaiting_approval" and waiting.expires_at is not None
    await decisions.approve(store, a.id, "human:alice")
    [final] = await engine.wait_for([a.id], timeout=30)
    assert final.state == "succeeded" and final.decided_by == "human:alice"
    with pytest.raises(decisions.DecisionError, match="already ran"):
        await decisions.approve(store, a.id, "human:bob")
    kinds = [e.kind for e in await store.list_audit(ref=f"action:{a.id}")]
    assert "action.approved" in kinds and "action.approve_refused" in kinds


async def test_reject_and_expiry(sim: SimThread, store: Store, subject: TiKVSubject) -> None:
    run_id = await store.start_run("test", "tikv")
    engine = ActionEngine(store, subject, run_id, ActionSettings(approval_timeout_s=1.0), poll_interval=0.05)
    await engine.start()
    try:
        await set_approval(store, "risky", "human:test")
        [low] = await engine.submit([ActionRequest(name="undrain_store", params={"store_id": 1})], actor="agent")
        [high] = await engine.submit([ActionRequest(name="drain_store", params={"store_id": 1})], actor="agent")
        assert (await engine.wait_for([low.id], timeout=20))[0].state == "succeeded"  # low risk: no approval
        await engine.wait_for([high.id], timeout=10, until=frozenset({ActionState.awaiting_approval}))
        await decisions.reject(store, high.id, "human:alice", "not during business hours")
        [final] = await engine.wait_for([high.id], timeout=10)
        assert final.state == "rejected" and "not during business hours" in final.reason
        [late] = await engine.submit([ActionRequest(name="drain_store", params={"store_id": 1})], actor="agent")
        [expired] = await engine.wait_for([late.id], timeout=20)
        assert expired.state == "expired"
        with pytest.raises(decisions.DecisionError, match="expired"):
            await decisions.approve(store, late.id, "human:alice")
    finally:
        await engine.stop()


async def test_mode_propose_and_observe_for_agent_actions(sim: SimThread, engine: ActionEngine, store: Store) -> None:
    await set_mode(store, "propose", "human:test")
    [a] = await engine.submit([ActionRequest(name="undrain_store", params={"store_id": 1})], actor="agent")
    await engine.wait_for([a.id], timeout=10, until=frozenset({ActionState.awaiting_approval}))
    human = await run_one(engine, "undrain_store", {"store_id": 2})  # humans are not held by the mode
    assert human.state == "succeeded"
    cancelled = await decisions.change_mode(store, "observe", "human:test")
    assert a.id in cancelled
    assert (await store.get_action(a.id)).state == "cancelled"
    [b] = await engine.submit([ActionRequest(name="undrain_store", params={"store_id": 1})], actor="agent")
    assert (await engine.wait_for([b.id], timeout=10))[0].state == "cancelled"


async def test_workflow_runs_in_order_and_stops_on_failure(sim: SimThread, engine: ActionEngine,
                                                           store: Store) -> None:
    ok = await engine.submit([ActionRequest(name="drain_store", params={"store_id": 3}),
                              ActionRequest(name="undrain_store", params={"store_id": 3})], actor="human:test")
    finals = await engine.wait_for([a.id for a in ok], timeout=60)
    assert [a.state for a in finals] == ["succeeded", "succeeded"]
    first_done = max(t.at for t in await store.action_transitions(finals[0].id))
    second_started = min(t.at for t in await store.action_transitions(finals[1].id) if t.to_state == "executing")
    assert second_started >= first_done
    bad = await engine.submit([ActionRequest(name="transfer_leader", params={"region_id": 999999, "to_store_id": 1}),
                               ActionRequest(name="drain_store", params={"store_id": 3})], actor="human:test")
    finals = await engine.wait_for([a.id for a in bad], timeout=30)
    assert finals[0].state == "failed" and "does not exist" in finals[0].reason
    assert finals[1].state == "cancelled" and "previous step" in finals[1].reason
    assert "evict-leader-scheduler" not in httpx.get(f"{sim.pd_url}/pd/api/v1/schedulers").json()


async def test_scheduled_step_runs_after_its_delay(sim: SimThread, engine: ActionEngine, store: Store) -> None:
    steps = await engine.submit([ActionRequest(name="drain_store", params={"store_id": 2}),
                                 ActionRequest(name="undrain_store", params={"store_id": 2}, delay_s=2.0)],
                                actor="human:test")
    [_, scheduled] = await engine.wait_for([a.id for a in steps], timeout=30,
                                           until=frozenset({ActionState.scheduled, ActionState.succeeded}))
    assert scheduled.state == "scheduled" and scheduled.not_before is not None
    assert "2" in httpx.get(f"{sim.pd_url}/pd/api/v1/scheduler-config/evict-leader-scheduler/list").json()[
        "store-id-ranges"]
    finals = await engine.wait_for([a.id for a in steps], timeout=30)
    assert [a.state for a in finals] == ["succeeded", "succeeded"]
    started = min(t.at for t in await store.action_transitions(finals[1].id) if t.to_state == "executing")
    first_done = max(t.at for t in await store.action_transitions(finals[0].id))
    assert started - first_done >= timedelta(seconds=1.9)


class FakeClock(Clock):
    """Time that moves only when someone sleeps: backoff delays are recorded, never waited."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.offset += seconds
        await asyncio.sleep(0)


async def test_retryable_failures_back_off_exponentially(sim: SimThread, store: Store, subject: TiKVSubject) -> None:
    import random

    clock = FakeClock()
    settings = ActionSettings(max_retries=3, backoff_base_s=1.0, backoff_max_s=30.0)
    engine = ActionEngine(store, subject, await store.start_run("test", "tikv"), settings, clock=clock,
                          rng=random.Random(1), poll_interval=0.05)
    # a slow admin operator holds region 10, so PD refuses a second one ("maybe already have one")
    r = region_without_peer_on(sim.pd_url, 4)
    assert httpx.post(f"{sim.pd_url}/pd/api/v1/operators",
                      json={"name": "add-peer", "region_id": r["id"], "store_id": 4}).status_code == 200
    other = next(p["store_id"] for p in r["peers"] if p["store_id"] != r["leader"]["store_id"])
    await engine.start()
    try:
        final = await run_one(engine, "transfer_leader", {"region_id": r["id"], "to_store_id": other}, timeout=60)
    finally:
        await engine.stop()
    assert final.attempts >= 2
    assert len(clock.sleeps) == final.attempts - 1
    for attempt, slept in enumerate(clock.sleeps, 1):  # equal jitter: between half and all of base * 2^(n-1)
        base = min(30.0, 2 ** (attempt - 1))
        assert base / 2 <= slept <= base
    retries = [e for e in await store.list_audit() if e.kind == "action.retry"]
    assert len(retries) == len(clock.sleeps)
    assert "already has an operator" in retries[0].data["reason"]


async def test_kill_switch_cancels_an_in_flight_operator_and_blocks_new_ones(store: Store) -> None:
    sim = start_sim_thread(sim_config(time_scale=1.0))  # a snapshot takes ~10 s: long enough to interrupt
    subject = await make_subject(sim.pd_url)
    engine = ActionEngine(store, subject, await store.start_run("test", "tikv"), poll_interval=0.05)
    await engine.start()
    try:
        leave_replicas_alone(sim.pd_url)
        r = region_without_peer_on(sim.pd_url, 1)
        [a] = await engine.submit([ActionRequest(name="add_peer", params={"region_id": r["id"], "store_id": 1})],
                                  actor="agent")
        await engine.wait_for([a.id], timeout=10, until=frozenset({ActionState.executing}))
        await asyncio.sleep(0.5)
        await decisions.engage_killswitch(store, "human:alice")
        [final] = await engine.wait_for([a.id], timeout=5)
        assert final.state == "cancelled" and "kill switch engaged by human:alice" in final.reason
        # PD's operator was cancelled too, so the peer never lands
        status = httpx.get(f"{sim.pd_url}/pd/api/v1/operators/{r['id']}").json()
        assert "CANCEL" in status
        [b] = await engine.submit([ActionRequest(name="undrain_store", params={"store_id": 1})], actor="human:test")
        assert (await engine.wait_for([b.id], timeout=5))[0].state == "cancelled"
        await decisions.release_killswitch(store, "human:alice")
        [c] = await engine.submit([ActionRequest(name="undrain_store", params={"store_id": 1})], actor="human:test")
        assert (await engine.wait_for([c.id], timeout=20))[0].state == "succeeded"
    finally:
        await engine.stop()
        await subject.aclose()
        sim.stop()


CRASHER = """
import asyncio, sys
from operator_tui.actions.engine import ActionEngine
from operator_tui.store import Store
from subjects import registry
from subjects.base import ActionRequest

async def main(db, pd, region_id):
    store = await Store.open(db)
    subject = await registry.build_subject("tikv", {"pd_url": pd})
    engine = ActionEngine(store, subject, await store.start_run("cli", "tikv"))
    await engine.start()
    await engine.submit([ActionRequest(name="add_peer", params={"region_id": region_id, "store_id": 1})],
                        actor="human:test")
    print("submitted", flush=True)
    await asyncio.sleep(120)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_crash_mid_execution_becomes_unknown_then_reconciled_not_rerun(store: Store, db_path: Any,
                                                                             tmp_path: Any) -> None:
    sim = start_sim_thread(sim_config(time_scale=1.0))
    try:
        leave_replicas_alone(sim.pd_url)
        r = region_without_peer_on(sim.pd_url, 1)
        script = tmp_path / "crasher.py"
        script.write_text(CRASHER)
        proc = await asyncio.create_subprocess_exec(sys.executable, str(script), str(db_path), sim.pd_url,
                                                    str(r["id"]), stdout=asyncio.subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                executing = await store.list_actions(states=["executing"])
                if executing:
                    break
                await asyncio.sleep(0.1)
            [action] = executing
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            await proc.wait()
        # the operator PD started keeps running without us: wait for it, then reconcile
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "RUNNING" in httpx.get(
                f"{sim.pd_url}/pd/api/v1/operators/{r['id']}").json():
            await asyncio.sleep(0.2)
        subject = await make_subject(sim.pd_url)
        engine = ActionEngine(store, subject, await store.start_run("test", "tikv"))
        try:
            await engine.reconcile_orphans()
        finally:
            await subject.aclose()
        final = await store.get_action(action.id)
        states = [t.to_state for t in await store.action_transitions(action.id)]
        assert "unknown" in states
        assert final.state == "succeeded" and "reconciled: it took effect" in final.reason
        assert states.count("executing") == 1  # never re-run
    finally:
        sim.stop()
