"""Per-run policy: a run's own mode, approval and kill switch, merged with the global ones; one
trial's kill switch never stops its neighbour, the global one stops everything."""

from __future__ import annotations

import asyncio

from operator_tui.actions.decisions import engage_killswitch, engage_run_killswitch, release_killswitch
from operator_tui.actions.engine import ActionEngine
from operator_tui.policy import load_policy, set_approval, set_mode
from operator_tui.store import Store
from subjects.base import ActionRequest
from tests.agent.agent_support import ToySubject


async def test_run_policy_overrides_the_global_one_for_that_run_only(store: Store) -> None:
    a, b = await store.start_run("eval_trial", "toy"), await store.start_run("eval_trial", "toy")
    await set_mode(store, "propose", "human:x")
    await set_mode(store, "observe", "harness", a, for_run=a)
    await set_approval(store, "all", "harness", a, for_run=a)
    assert (await load_policy(store)).mode == "propose"
    pa, pb = await load_policy(store, a), await load_policy(store, b)
    assert (pa.mode, pa.approval, pb.mode, pb.approval) == ("observe", "all", "propose", "off")
    await engage_run_killswitch(store, a, "harness")
    assert (await load_policy(store, a)).killswitch and not (await load_policy(store, b)).killswitch
    assert not (await load_policy(store)).killswitch  # the global switch is untouched
    await engage_killswitch(store, "human:x")
    assert (await load_policy(store, b)).killswitch and (await load_policy(store, b)).killswitch_by == "human:x"
    await release_killswitch(store, "human:x")
    assert (await load_policy(store, a)).killswitch and not (await load_policy(store, b)).killswitch


async def _executing(store: Store, action_id: int, timeout: float = 10.0) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        action = await store.get_action(action_id)
        assert action is not None
        if action.state in ("executing", "cancelled", "succeeded", "failed"):
            return action.state
        await asyncio.sleep(0.02)
    raise AssertionError(f"action {action_id} never started")


async def _state_after(store: Store, action_id: int, wanted: str, timeout: float = 10.0) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    state = ""
    while asyncio.get_running_loop().time() < deadline:
        action = await store.get_action(action_id)
        assert action is not None
        state = action.state
        if state == wanted:
            break
        await asyncio.sleep(0.02)
    return state


async def test_one_runs_kill_switch_never_stops_its_neighbour(store: Store) -> None:
    a, b = await store.start_run("eval_trial", "toy"), await store.start_run("eval_trial", "toy")
    # run-scoped, as each trial's engine is: the target lock and rate limit are the run's own
    engines = [ActionEngine(store, ToySubject(), run, poll_interval=0.02, run_scoped=True) for run in (a, b)]
    for engine in engines:
        await engine.start()
    try:
        wait = ActionRequest(name="wait", params={"seconds": 60})
        [act_a] = await engines[0].submit([wait], actor="agent")
        [act_b] = await engines[1].submit([wait], actor="agent")
        assert await _executing(store, act_a.id) == "executing"
        assert await _executing(store, act_b.id) == "executing"
        await engage_run_killswitch(store, a, "harness")
        assert await _state_after(store, act_a.id, "cancelled") == "cancelled"
        await asyncio.sleep(0.3)  # several engine passes: B is left alone
        assert (await store.get_action(act_b.id)).state == "executing"  # type: ignore[union-attr]
        [late_a] = await engines[0].submit([wait], actor="agent")
        assert await _state_after(store, late_a.id, "cancelled") == "cancelled"  # blocked while engaged
        await engage_killswitch(store, "human:x")  # the global switch still stops everything
        assert await _state_after(store, act_b.id, "cancelled") == "cancelled"
    finally:
        await release_killswitch(store, "human:x")
        for engine in engines:
            await engine.stop()
