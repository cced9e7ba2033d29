"""The embedded agent resolves a killed etcd member container by restarting that container: docker
kill -> member_reachable ticket -> diagnosis -> restart_member (docker start) -> verification -> resolved."""

from __future__ import annotations

from typing import Any

import pytest
from etcd_support import healthy, inject, revert, subject_for

from containers import nodes
from tests.operator_harness import run_operator

pytestmark = pytest.mark.slow


async def test_a_killed_member_container_is_restarted_by_the_agent(docker_etcd_lab: Any, store: Any) -> None:
    lab = docker_etcd_lab
    subject = await subject_for(lab)
    try:
        await healthy(subject)
        async with run_operator(subject, store) as op:
            fault = await inject(lab, "kill_member", "leader")
            member = fault.target
            killed = nodes.info(lab._client(), lab.state.containers[member].id)
            assert killed["state"] == nodes.EXITED
            ticket = await op.ticket("member_reachable", "resolved", entity=f"member:{member}", timeout=60)
        assert ticket.resolution["by"] == "agent" and ticket.resolution["verification"]["holds"] is True
        actions = [(a.name, a.params, a.state) for a in await store.list_actions(ticket_id=ticket.id)]
        assert actions == [("restart_member", {"member": member, "force": False}, "succeeded")]
        after = nodes.info(lab._client(), lab.state.containers[member].id)
        # The same container, started again by the agent: not a new one, and not a revert of the fault.
        assert after["id"] == killed["id"] and after["state"] == nodes.RUNNING
        assert after["started_ms"] > (killed["started_ms"] or 0)
        await healthy(subject)
        assert "already running" in await revert(lab, fault)
    finally:
        await subject.aclose()
