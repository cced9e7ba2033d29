"""The embedded agent resolves a killed node container by restarting that container: fault through
the engine -> node_down ticket -> diagnosis -> restart_node -> verification -> resolved."""

from __future__ import annotations

from typing import Any

import pytest
from rl_subject_support import operator

from containers import nodes
from subjects.ratelimiter import chaos

pytestmark = pytest.mark.slow


async def test_a_killed_container_is_restarted_by_the_agent(docker_lab: Any, store: Any) -> None:
    rec = docker_lab.state.containers["n2"]
    async with operator(docker_lab, store) as op:
        await op.until(lambda: _all_up(op), 30, "the operator sees every node up")
        fault = await chaos.inject({"lab_dir": str(docker_lab.run_dir)}, "node_kill", "n2", {})
        killed = nodes.info(docker_lab._client(), rec.id)
        assert killed["state"] == nodes.EXITED
        ticket = await op.ticket("node_down", "resolved", entity="node:n2", timeout=90)
    assert ticket.resolution["by"] == "agent" and ticket.resolution["verification"]["holds"] is True
    actions = [(a.name, a.params, a.state) for a in await store.list_actions(ticket_id=ticket.id)]
    assert ("restart_node", {"node_id": "n2"}, "succeeded") in actions
    after = nodes.info(docker_lab._client(), rec.id)
    # The same container, started again by the agent: not a new one, and not a revert of the fault.
    assert after["state"] == nodes.RUNNING and after["started_ms"] > (killed["started_ms"] or 0)
    detail = await chaos.revert({"lab_dir": str(docker_lab.run_dir)}, fault)
    assert "already running" in detail


async def _all_up(op: Any) -> bool:
    obs = await op.subject.observe()
    return obs.reachable and sum(1 for n in obs.nodes if n.kind == "node" and n.state.value == "up") == 3
