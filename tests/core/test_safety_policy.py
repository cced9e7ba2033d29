"""Safe defaults and truthful modes (issue 10, defect 10): against a real cluster approval defaults to
`risky`; observe mode stops every action of the agent (its shell commands included) and says
plainly that people's own actions still run."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from operator_tui.actions.engine import ActionEngine
from operator_tui.agent.shell import Shell, register_shell_action
from operator_tui.policy import load_policy, set_mode
from operator_tui.store import Store
from screens.commands import MODES
from subjects.base import ActionRequest
from subjects.tikv.sim import SimThread
from subjects.tikv.subject import TiKVSubject
from tests.pd_proxy import PDProxy


async def operator_tui(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "operator_tui", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_approval_defaults_to_risky_against_a_real_cluster(sim: SimThread, tmp_path: Path) -> None:
    """A simulator's PD port serves only PD's API, so it looks like a real PD (here through a proxy
    as well); the operator knows it watches a simulator when told the simulator's admin API."""
    async with PDProxy(sim.pd_url, hide_sim=True) as real_pd:
        for name, pd, extra, expected in (("real", real_pd.url, [], "risky"),
                                          ("sim", sim.pd_url, ["--sim-admin", sim.admin_url], "off"),
                                          ("chosen", real_pd.url, ["--approval", "off"], "off")):
            db = str(tmp_path / f"{name}.db")
            code, _out, log = await operator_tui("run", "--headless", "--pd", pd, "--db", db, "--agent", "none",
                                                 "--duration", "0.5", *extra)
            assert code == 0, log
            code, out, err = await operator_tui("approval", "--db", db)
            assert (code, out.strip()) == (0, expected), (name, out, err)
            assert ("approval defaults to risky against a real cluster" in log) == (name == "real"), log


async def test_observe_stops_the_agent_and_its_shell_but_not_people(subject: TiKVSubject, store: Store) -> None:
    assert "by hand still run" in MODES["observe"]
    await set_mode(store, "observe", "human:lead")
    engine = ActionEngine(store, subject, await store.start_run("test", "tikv"), poll_interval=0.05)
    register_shell_action(engine.catalogue, Shell())
    await engine.start()
    try:
        [agent] = await engine.submit([ActionRequest(name="wait", params={"seconds": 0.01})], actor="agent")
        [shell] = await engine.submit([ActionRequest(name="run_shell", params={"command": "touch /tmp/x"})],
                                      actor="agent")
        [human] = await engine.submit([ActionRequest(name="wait", params={"seconds": 0.01})], actor="human:sre")
        finals = {a.id: a for a in await engine.wait_for([agent.id, shell.id, human.id], timeout=20)}
    finally:
        await engine.stop()
    assert finals[agent.id].state == "cancelled" and "observe" in finals[agent.id].reason
    assert finals[shell.id].state == "cancelled" and "observe" in finals[shell.id].reason
    assert finals[human.id].state == "succeeded", "observe says people's own actions still run: they do"
    assert (await load_policy(store)).mode == "observe"
