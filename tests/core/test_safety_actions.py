"""Honest outcomes for interrupted and failing actions (issue 10, defects 4, 5, 6, 9), against the
live simulator (through a recording, fault-injecting proxy where a flaky PD is needed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from operator_tui.actions import decisions
from operator_tui.actions.engine import ActionEngine
from operator_tui.actions.states import ActionState
from operator_tui.config import ActionSettings
from operator_tui.policy import set_approval
from operator_tui.store import Store
from subjects.base import ActionRequest, RiskTier
from subjects.tikv.sim import SimThread, start_sim_thread
from subjects.tikv.subject import TiKVSubject
from tests.core.conftest import make_subject, sim_config
from tests.core.test_actions_live import leave_replicas_alone, region_without_peer_on
from tests.pd_proxy import PDProxy


@pytest.fixture
def slow_sim() -> Iterator[SimThread]:
    """Real time, one leader move at a time: draining a store takes tens of seconds."""
    thread = start_sim_thread(sim_config(time_scale=1.0, regions=200))
    try:
        assert httpx.post(f"{thread.pd_url}/pd/api/v1/config", json={"leader-schedule-limit": 1}).status_code == 200
        yield thread
    finally:
        thread.stop()


@pytest.fixture
async def slow_subject(slow_sim: SimThread) -> AsyncIterator[TiKVSubject]:
    s = await make_subject(slow_sim.pd_url)
    try:
        yield s
    finally:
        await s.aclose()


async def start_engine(store: Store, subject: Any, **settings: Any) -> ActionEngine:
    engine = ActionEngine(store, subject, await store.start_run("test", "tikv"),
                          ActionSettings(**{"backoff_base_s": 0.05, **settings}), poll_interval=0.05)
    await engine.start()
    return engine


async def until_state(store: Store, action_id: int, states: set[str], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        a = await store.get_action(action_id)
        if a.state in states:
            return a
        await asyncio.sleep(0.05)
    raise AssertionError(f"action {action_id} is {a.state} ({a.reason}), not in {states} after {timeout} s")


def evicted(pd_url: str) -> list[int]:
    r = httpx.get(f"{pd_url}/pd/api/v1/scheduler-config/evict-leader-scheduler/list")
    return sorted(int(k) for k in (r.json().get("store-id-ranges") or {})) if r.status_code == 200 else []


@pytest.mark.slow
async def test_kill_switch_mid_drain_is_unknown_then_reconciled_never_cancelled(
        slow_sim: SimThread, slow_subject: TiKVSubject, store: Store) -> None:
    """Must show: drain_store interrupted by the kill switch shows `unknown` then reconciled, never
    `cancelled` while PD still drains."""
    engine = await start_engine(store, slow_subject)
    try:
        [a] = await engine.submit([ActionRequest(name="drain_store", params={"store_id": 4})], actor="human:sre")
        await until_state(store, a.id, {"executing"})
        await asyncio.sleep(1.0)
        await decisions.engage_killswitch(store, "human:alice")
        final = await until_state(store, a.id, {"succeeded", "failed", "cancelled"})
    finally:
        await engine.stop()
    states = [t.to_state for t in await store.action_transitions(a.id)]
    assert states[-3:] == ["executing", "unknown", "succeeded"], states
    assert "cancelled" not in states
    assert "kill switch engaged by human:alice" in final.reason and "reconciled: it took effect" in final.reason
    assert "undo with undrain_store" in final.reason
    assert 4 in evicted(slow_sim.pd_url), "PD still drains: the evict-leader scheduler is in place"
    leaders = httpx.get(f"{slow_sim.pd_url}/pd/api/v1/store/4").json()["status"].get("leader_count", 0)
    assert leaders > 0, "the drain was still under way when it was stopped"
    kinds = [e.kind for e in await store.list_audit(limit=50, ref=f"action:{a.id}")]
    assert "action.unknown" in kinds and kinds[-1] == "action.succeeded"


@pytest.mark.slow
async def test_human_cancel_mid_drain_is_reconciled_and_undone(slow_sim: SimThread, slow_subject: TiKVSubject,
                                                                store: Store) -> None:
    engine = await start_engine(store, slow_subject)
    try:
        [a] = await engine.submit([ActionRequest(name="drain_store", params={"store_id": 4})], actor="human:sre")
        await until_state(store, a.id, {"executing"})
        await asyncio.sleep(1.0)
        message = await decisions.cancel(store, a.id, "human:bob", "wrong store")
        assert "reconciled" in message and "undone" in message
        final = await until_state(store, a.id, {"succeeded", "failed", "cancelled"})
        assert final.state == "succeeded" and "reconciled: it took effect" in final.reason

        async def undo() -> Any:
            for x in await store.list_actions():
                if x.name == "undrain_store" and x.state in ("succeeded", "failed"):
                    return x
            return None

        deadline = time.monotonic() + 30
        while (done := await undo()) is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        await engine.stop()
    assert done is not None and done.state == "succeeded", done
    assert f"undo of action #{a.id}" in done.reason or done.requested_by == "system"
    assert 4 not in evicted(slow_sim.pd_url), "the cancelled drain was undone"


async def test_timeout_after_send_is_unknown_then_reconciled_not_failed(
        slow_sim: SimThread, slow_subject: TiKVSubject, store: Store) -> None:
    """add_peer needs a snapshot (~10 s here); the engine gives up after 2 s. Giving up also stops
    PD's operator; whether the peer is there is then checked, not assumed."""
    leave_replicas_alone(slow_sim.pd_url)
    region = region_without_peer_on(slow_sim.pd_url, 1)
    engine = await start_engine(store, slow_subject, timeout_s=2.0)
    try:
        [a] = await engine.submit([ActionRequest(name="add_peer", params={"region_id": region["id"], "store_id": 1})],
                                  actor="human:sre")
        final = await until_state(store, a.id, {"succeeded", "failed", "cancelled"})
    finally:
        await engine.stop()
    states = [t.to_state for t in await store.action_transitions(a.id)]
    assert states[-2] == "unknown" and states.count("executing") == 1, states
    assert "no confirmation within 2 s" in final.reason and "reconciled: it did not take effect" in final.reason
    assert final.state == "failed"


async def test_split_region_is_never_sent_twice_when_its_confirmation_fails(sim: SimThread, store: Store) -> None:
    """The split request went out; PD then fails to answer about it. Retrying blindly would split
    the region twice: the engine reconciles instead (and waits while PD's operator may still run)."""
    regions_before = httpx.get(f"{sim.pd_url}/pd/api/v1/regions/count").json()["count"]
    async with PDProxy(sim.pd_url) as proxy:
        proxy.fail("GET", r"^/pd/api/v1/operators/10$", status=503, times=1,
                   after=("POST", "/pd/api/v1/operators"))
        subject = await make_subject(proxy.url)
        engine = await start_engine(store, subject, max_retries=3)
        try:
            [a] = await engine.submit([ActionRequest(name="split_region", params={"region_id": 10})], actor="agent")
            final = await until_state(store, a.id, {"succeeded", "failed", "cancelled"}, timeout=60)
        finally:
            await engine.stop()
            await subject.aclose()
        posts = proxy.count("POST", r"^/pd/api/v1/operators$", {"name": "split-region"})
    assert posts == 1, f"the split was sent {posts} times"
    assert final.state == "succeeded" and "reconciled" in final.reason, (final.state, final.reason)
    assert httpx.get(f"{sim.pd_url}/pd/api/v1/regions/count").json()["count"] == regions_before + 1
    assert final.checkpoint and "range" in final.checkpoint


async def test_transfer_peer_that_succeeded_is_not_marked_failed(sim: SimThread, store: Store) -> None:
    region = httpx.get(f"{sim.pd_url}/pd/api/v1/region/id/10").json()
    peers = {p["store_id"] for p in region["peers"]}
    source = next(p for p in sorted(peers) if p != region["leader"]["store_id"])
    target = next(s for s in range(1, 6) if s not in peers)
    async with PDProxy(sim.pd_url) as proxy:
        # PD's operator finishes; then the read that confirms it fails.
        proxy.fail("GET", r"^/pd/api/v1/region/id/10$", status=503, times=1,
                   after=("GET", "/pd/api/v1/operators/10"))
        subject = await make_subject(proxy.url)
        engine = await start_engine(store, subject)
        try:
            [a] = await engine.submit([ActionRequest(name="transfer_peer", params={
                "region_id": 10, "from_store_id": source, "to_store_id": target})], actor="agent")
            final = await until_state(store, a.id, {"succeeded", "failed", "cancelled"}, timeout=90)
        finally:
            await engine.stop()
            await subject.aclose()
        posts = proxy.count("POST", r"^/pd/api/v1/operators$", {"name": "transfer-peer"})
    assert final.state == "succeeded" and "reconciled" in final.reason, (final.state, final.reason)
    assert posts == 1
    moved = {p["store_id"] for p in httpx.get(f"{sim.pd_url}/pd/api/v1/region/id/10").json()["peers"]}
    assert target in moved and source not in moved


async def test_approval_tightened_while_waiting_sends_it_back_for_approval(subject: TiKVSubject, store: Store) -> None:
    """Approved under a looser policy, waiting for its time: when approval tightens before it runs,
    it waits for a human instead of running."""
    engine = await start_engine(store, subject)
    try:
        [a] = await engine.submit([ActionRequest(name="wait", params={"seconds": 0.1}, delay_s=1.5)],
                                  actor="human:sre")
        await until_state(store, a.id, {"scheduled"}, timeout=10)
        await set_approval(store, "all", "human:lead")
        waiting = await until_state(store, a.id, {"awaiting_approval", "executing", "succeeded"}, timeout=10)
        assert waiting.state == "awaiting_approval", waiting.reason
        assert "approval required now" in waiting.reason
        await decisions.approve(store, a.id, "human:lead")
        final = await until_state(store, a.id, {"succeeded", "failed"}, timeout=10)
    finally:
        await engine.stop()
    assert final.state == "succeeded"
    states = [t.to_state for t in await store.action_transitions(a.id)]
    assert states.index("awaiting_approval") > states.index("scheduled")


async def test_delay_of_a_single_action_counts_from_now(subject: TiKVSubject, store: Store) -> None:
    engine = await start_engine(store, subject)
    try:
        [a] = await engine.submit([ActionRequest(name="wait", params={"seconds": 0.01}, delay_s=1.5)],
                                  actor="human:sre")
        final = await until_state(store, a.id, {"succeeded", "failed"}, timeout=10)
    finally:
        await engine.stop()
    transitions = await store.action_transitions(a.id)
    executing = next(t.at for t in transitions if t.to_state == "executing")
    assert (executing - a.created_at).total_seconds() >= 1.4 and final.state == "succeeded"
    assert "scheduled" in [t.to_state for t in transitions]


@pytest.mark.parametrize(("scheduler", "risk"), [
    ("balance-leader-scheduler", RiskTier.high), ("balance-region-scheduler", RiskTier.high),
    ("balance-hot-region-scheduler", RiskTier.high), ("evict-slow-store-scheduler", RiskTier.high),
    ("evict-leader-scheduler-3", RiskTier.low), ("grant-leader-scheduler-2", RiskTier.low),
])
async def test_removing_a_balancing_or_protective_scheduler_is_not_low_risk(subject: TiKVSubject, store: Store,
                                                                           scheduler: str, risk: RiskTier) -> None:
    await set_approval(store, "risky", "human:lead")
    engine = await start_engine(store, subject)
    try:
        [a] = await engine.submit([ActionRequest(name="remove_scheduler", params={"name": scheduler})], actor="agent")
        settled = await until_state(store, a.id, {"awaiting_approval", "succeeded", "failed"}, timeout=20)
    finally:
        await engine.stop()
    assert a.risk == risk.value
    assert (settled.state == "awaiting_approval") == (risk == RiskTier.high), settled.state
    catalogue = {c["name"]: c for c in engine.describe()}
    assert catalogue["remove_scheduler"]["risk_depends_on_parameters"] is True


async def test_unknown_state_is_terminal_for_nothing_but_reconciliation(store: Store) -> None:
    """unknown may only end as what reconciliation finds: succeeded, failed, or cancelled."""
    from operator_tui.actions.states import TRANSITIONS

    assert TRANSITIONS[ActionState.unknown] == {ActionState.succeeded, ActionState.failed, ActionState.cancelled}
    assert ActionState.executing not in TRANSITIONS[ActionState.unknown], "never re-run"
