"""The TiKV evaluation adapter on live labs: every fault kind lands and is undone (both checked),
and two slots on the same ports never meet."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from eval_support import LAB, chains_named, free_port_base, free_slot

from subjects.evaluation import AddressBlock, LabRequest, Manifest, Verdict
from subjects.tikv.evaluation import ADAPTER

pytestmark = pytest.mark.slow


@pytest.fixture
async def labs(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Factory: `await labs(slot, port_base)` -> a healthy lab's manifest; all torn down after."""
    started: list[Manifest] = []

    async def make(slot: int, port_base: int) -> Manifest:
        manifest = await ADAPTER.reset(LabRequest(AddressBlock(slot, port_base), tmp_path / f"lab{slot}",
                                                  f"t{slot}x{random.randrange(1000)}", 3, dict(LAB)))
        started.append(manifest)
        for _ in range(100):
            if all(c.ok for c in await ADAPTER.oracle(manifest, None, [])):
                return manifest
            await asyncio.sleep(0.2)
        raise AssertionError("the lab never turned healthy")

    yield make
    for manifest in started:
        await ADAPTER.teardown(manifest)
        assert await ADAPTER.leftovers(manifest) == []


async def until(check: Callable[[], Any], timeout: float = 8.0) -> Verdict:
    verdict = await check()
    deadline = asyncio.get_running_loop().time() + timeout
    while not verdict.ok and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        verdict = await check()
    return verdict


async def test_every_fault_kind_lands_and_is_undone(labs: Callable[..., Any]) -> None:
    manifest = await labs(free_slot(), free_port_base())
    rng = random.Random(5)
    kinds = ADAPTER.fault_kinds()
    assert {"kill_store", "partition_status", "pd_down", "status_hang"} <= set(kinds)
    for i, kind in enumerate(kinds):
        plan = await ADAPTER.plan_fault(manifest, kind, None, {}, rng, f"{manifest.ident}{i}")
        assert plan.undo["fault_id"] and (plan.affected or kind == "hot_region")
        await ADAPTER.apply_fault(manifest, plan)
        effect = await until(lambda p=plan: ADAPTER.fault_effect(manifest, p))
        assert effect.ok, (kind, effect)
        assert await ADAPTER.revert_fault(plan.undo)
        assert await ADAPTER.revert_fault(plan.undo)  # idempotent
        reverted = await until(lambda p=plan: ADAPTER.fault_reverted(p.undo))
        assert reverted.ok, (kind, reverted)
    assert chains_named(f"OPEV{manifest.ident}") == []


async def test_two_slots_on_the_same_ports_never_meet(labs: Callable[..., Any]) -> None:
    port_base = free_port_base()
    slot_a = free_slot()
    slot_b = slot_a + 1 if slot_a < 230 else slot_a - 1
    a, b = await labs(slot_a, port_base), await labs(slot_b, port_base)
    assert a.admin["pd"].rsplit(":", 1)[1] == b.admin["pd"].rsplit(":", 1)[1]  # the same port numbers
    assert a.admin["status"]["2"].rsplit(":", 1)[1] == b.admin["status"]["2"].rsplit(":", 1)[1]
    plan = await ADAPTER.plan_fault(a, "partition_status", "2", {}, random.Random(1), f"{a.ident}p")
    kill = await ADAPTER.plan_fault(a, "kill_store", "store:3", {}, random.Random(1), f"{a.ident}k")
    try:
        await ADAPTER.apply_fault(a, plan)
        await ADAPTER.apply_fault(a, kill)
        assert (await until(lambda: ADAPTER.fault_effect(a, plan))).ok
        rules = chains_named(plan.undo["chain"])
        assert rules and all(AddressBlock(slot_a).prefix in r for r in rules if "-d " in r)
        assert not any(AddressBlock(slot_b).prefix + "." in r for r in rules)
        async with httpx.AsyncClient(timeout=3) as client:
            # B's store 2 (same port, its own address) still answers; B's store 3 still runs
            assert (await client.get(f"http://{b.admin['status']['2']}/status")).status_code == 200
            assert (await client.get(f"http://{b.admin['status']['3']}/status")).status_code == 200
            stores = (await client.get(f"{b.admin['pd']}/pd/api/v1/stores")).json()["stores"]
        assert {s["store"]["state_name"] for s in stores} == {"Up"}
        assert all(c.ok for c in await ADAPTER.oracle(b, None, []))
    finally:
        for p in (kill, plan):
            await ADAPTER.revert_fault(p.undo)
    assert (await until(lambda: ADAPTER.fault_reverted(plan.undo))).ok
    assert chains_named(plan.undo["chain"]) == []
