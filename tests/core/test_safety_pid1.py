"""Must show (issue 10): an operator started as PID 1 in a fresh PID namespace (`unshare --pid
--fork --mount-proc`), killed with SIGKILL while an action runs and started again the same way,
reconciles that action and claims new tickets on the same store.

Both operators are PID 1, so the first one's PID is the second one's own: only the run's lock
(released by the kernel when the first one died) tells them apart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from operator_tui.store import Store
from subjects.tikv.sim import start_sim_thread
from tests.core.conftest import fault, sim_config

pytestmark = pytest.mark.slow

ENV = {
    "OPERATOR_TUI_TIKV__GRACES": '{"slow_store": 1, "store_unreachable": 0}',
    "OPERATOR_TUI_AGENT_OPTIONS__VERIFY_DELAY_S": "1",
    "OPERATOR_TUI_CLEAR_AFTER": "2",
}


def ns_pid(host_pid: int) -> int | None:
    """The PID a process has inside its own (innermost) PID namespace."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{host_pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return None


def init_of(unshare: subprocess.Popen[bytes]) -> int:
    """The host PID of the namespace's PID 1 (the child `unshare --fork` started)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children").read_text().split()
            if children:
                return int(children[0])
        time.sleep(0.05)
    raise AssertionError("unshare started no child")


@contextlib.asynccontextmanager
async def operator_as_pid1(pd_url: str, db: Path, log: Path) -> AsyncIterator[int]:
    """`operator-tui run --headless` as PID 1 of a fresh PID namespace; yields its host PID.
    Whatever happens, nothing of it outlives the block."""
    binary = Path(sys.executable).with_name("operator-tui")
    command = ["unshare", "--pid", "--fork", "--mount-proc", str(binary), "run", "--headless", "--pd", pd_url,
               "--db", str(db), "--agent", "embedded", "--mode", "execute", "--approval", "off", "--interval", "0.5"]
    with log.open("ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=out, env={**os.environ, **ENV})
    init = None
    try:
        init = init_of(proc)
        yield init
    finally:
        for pid in (init, proc.pid):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)


async def until(what: str, probe: Any, timeout: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what} not reached in {timeout} s; operator log:\n{log.read_text()[-3000:]}")


async def test_pid1_operator_killed_mid_action_is_taken_over_by_the_next_pid1(tmp_path: Path) -> None:
    # Root and unshare (util-linux, installed by scripts/setup.sh) are needed: a missing one fails here.
    assert shutil.which("unshare") and os.geteuid() == 0, "needs root and unshare (util-linux)"
    sim = start_sim_thread(sim_config(time_scale=1.0, regions=200))
    db, log = tmp_path / "operator.db", tmp_path / "operator.log"
    store = await Store.open(db)
    try:
        # A slow store the operator must drain itself (PD's own slow-store guard off), one leader move
        # at a time: the drain runs for tens of seconds, long enough to be killed in the middle.
        assert httpx.delete(f"{sim.pd_url}/pd/api/v1/schedulers/evict-slow-store-scheduler").status_code == 200
        assert httpx.post(f"{sim.pd_url}/pd/api/v1/config", json={"leader-schedule-limit": 1}).status_code == 200

        async with operator_as_pid1(sim.pd_url, db, log) as first:
            async def first_run() -> Any:
                runs = await store.list_runs()
                return runs[0] if runs else None

            run1 = await until("the first run", first_run, 60, log)
            assert ns_pid(first) == 1 and run1.pid == 1, "the operator is PID 1 in its namespace"
            await fault(sim.admin_url, {"kind": "slow_store", "store_id": 4, "latency_ms": 300})

            async def draining() -> Any:
                return [a for a in await store.list_actions(states=["executing"]) if a.name == "drain_store"]

            [action] = await until("drain_store executing", draining, 120, log)
            await asyncio.sleep(1.0)
            os.kill(first, signal.SIGKILL)
        assert (await store.get_action(action.id)).state == "executing", "killed mid-action"

        async with operator_as_pid1(sim.pd_url, db, log) as second:
            async def second_run() -> Any:
                runs = [r for r in await store.list_runs() if r.id != run1.id]
                return runs[0] if runs else None

            run2 = await until("the second run", second_run, 60, log)
            assert ns_pid(second) == 1 and run2.pid == run1.pid == 1, "the same PID as the one that died"

            async def reconciled() -> Any:
                a = await store.get_action(action.id)
                return a if a.state in ("succeeded", "failed", "cancelled") else None

            final = await until("the drain reconciled", reconciled, 60, log)
            states = [t.to_state for t in await store.action_transitions(action.id)]
            assert states.count("executing") == 1 and "unknown" in states, states
            assert final.state == "succeeded" and "reconciled: it took effect" in final.reason, final.reason
            assert "undrain_store" in final.reason
            assert (await store.get_run(run1.id)).status == "died"

            await fault(sim.admin_url, {"kind": "kill_store", "store_id": 2})

            async def claimed() -> Any:
                for t in await store.list_tickets():
                    if t.invariant == "store_unreachable" and t.entity == "store:2":
                        sessions = await store.sessions_for_ticket(t.id)
                        if any(s.run_id == run2.id for s in sessions):
                            return t
                return None

            ticket = await until("a new ticket claimed by the second operator", claimed, 90, log)
            assert ticket.run_id == run2.id
        ok, _checked, problem = await store.verify_audit()
        assert ok, problem
        assert not [a for a in await store.list_actions(states=["executing"])
                    if a.run_id == run1.id], "nothing of the dead run is left executing"
    finally:
        await store.close()
        await asyncio.to_thread(sim.stop)
