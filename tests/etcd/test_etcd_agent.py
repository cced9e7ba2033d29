"""The embedded agent end to end on the live etcd lab under load, one scenario per fault:
fault -> one ticket -> diagnosis over the etcd runbooks -> actions through the engine ->
verification -> resolved (or escalated with its reasons where no action can fix it)."""

from __future__ import annotations

import pytest
from etcd_support import inject, leader, module_lab, revert, seconds_since, until

from operator_tui.store import Store
from subjects.etcd.client import EtcdClient
from tests.operator_harness import run_operator

pytestmark = pytest.mark.slow

lab = module_lab("etcd-agent", load=True)


async def actions_of(store: Store, ticket_id: int) -> list[tuple[str, dict, str]]:
    return [(a.name, a.params, a.state) for a in reversed(await store.list_actions(ticket_id=ticket_id))]


async def tickets(store: Store) -> list[tuple[str, str, str]]:
    return [(t.invariant, t.entity, t.status) for t in await store.list_tickets()]


async def chosen_cause(store: Store, ticket_id: int) -> str:
    sessions = await store.sessions_for_ticket(ticket_id)
    return next(a["cause"] for a in sessions[0].diagnosis["alternatives"] if a["verdict"] == "chosen")


async def test_a_killed_follower_is_restarted_and_the_ticket_resolves(lab, subject, store) -> None:
    async with run_operator(subject, store) as op:
        record = await inject(lab, "kill_member")
        try:
            ticket = await op.ticket("member_reachable", "resolved", timeout=45)
        finally:
            await revert(lab, record)
        assert ticket.entity == f"member:{record.target}"
        assert ticket.resolution["by"] == "agent" and ticket.resolution["verification"]["holds"] is True
        assert await actions_of(store, ticket.id) == [("restart_member", {"member": record.target, "force": False},
                                                      "succeeded")]
        assert await chosen_cause(store, ticket.id) == "The member's process is dead"
        assert await tickets(store) == [("member_reachable", f"member:{record.target}", "resolved")]


async def test_a_killed_leader_has_a_ticket_within_3s_a_new_leader_and_is_restarted(lab, subject, store) -> None:
    async with run_operator(subject, store) as op:
        old = leader(await subject.observe())
        record = await inject(lab, "kill_member", "leader")
        try:
            obs = await until(subject, lambda o: o.details.get("leader") not in (None, old), 10.0, "a new leader")
            opened = await op.ticket("member_reachable", timeout=10)
            ticket = await op.ticket("member_reachable", "resolved", timeout=45)
        finally:
            await revert(lab, record)
        assert record.target == old and ticket.entity == f"member:{old}"
        assert seconds_since(record, opened.opened_at) < 3.0
        assert leader(obs) != old
        assert ticket.evidence["was_leader"] is True
        assert ticket.resolution["by"] == "agent" and ticket.resolution["verification"]["holds"] is True
        assert [a[0] for a in await actions_of(store, ticket.id)] == ["restart_member"]


async def test_nospace_is_compacted_defragmented_one_by_one_and_disarmed(lab, subject, store) -> None:
    async with run_operator(subject, store) as op:
        before = leader(await subject.observe())
        record = await inject(lab, "quota_fill")
        try:
            ticket = await op.ticket("no_alarms", "resolved", timeout=60)
            client = EtcdClient(timeout=5.0)
            try:
                assert await client.put(lab.client_urls()["m1"], "/test/after-nospace", "ok") > 0
            finally:
                await client.aclose()
        finally:
            await revert(lab, record)
        steps = await actions_of(store, ticket.id)
        names = [s[0] for s in steps]
        assert all(s[2] == "succeeded" for s in steps), steps
        assert names == ["compact", "defragment", "defragment", "move_leader", "defragment", "disarm_alarm"]
        defragged = [s[1]["member"] for s in steps if s[0] == "defragment"]
        assert sorted(defragged) == ["m1", "m2", "m3"] and defragged[-1] == before  # the leader last, after the move
        assert ticket.resolution["by"] == "agent"
        assert await tickets(store) == [("no_alarms", "cluster", "resolved")]  # headroom was the same incident


async def test_a_partitioned_member_is_diagnosed_as_such_and_left_to_a_human(lab, subject, store) -> None:
    async with run_operator(subject, store) as op:
        record = await inject(lab, "partition_member")
        try:
            ticket = await op.ticket("member_has_leader", "escalated", timeout=45)
        finally:
            await revert(lab, record)
        assert ticket.entity == f"member:{record.target}"
        assert await chosen_cause(store, ticket.id) == "The member is cut off from its peers (network partition)"
        assert await actions_of(store, ticket.id) == []  # nothing here mends a network
        [session] = await store.sessions_for_ticket(ticket.id)
        assert "restores the network" in session.diagnosis["expected_outcome"]
        resolved = await op.ticket("member_has_leader", "resolved", timeout=30)  # once healed, by the monitor
        assert resolved.resolution["by"] == "monitor"
