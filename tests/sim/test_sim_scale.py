"""A larger cluster over real HTTP: many status listeners, cached region JSON, cheap checks."""

from __future__ import annotations

import asyncio

import httpx
from tikv_sim_helpers import PD


async def test_hundreds_of_stores_each_with_its_own_listener(make_manual) -> None:
    sim = await make_manual(stores=300, regions=30_000, seed=5)
    stores = (await sim.get(f"{PD}/stores")).json()
    assert stores["count"] == 300
    addresses = [s["store"]["status_address"] for s in stores["stores"]]
    assert len(set(addresses)) == 300
    await asyncio.sleep(0)

    async with httpx.AsyncClient(timeout=30) as client:
        for address in addresses[::37]:
            assert (await client.get(f"http://{address}/status")).status_code == 200
        text = (await client.get(f"http://{addresses[0]}/metrics")).text
    assert 'tikv_raftstore_region_count{type="region"} 300' in text
    first = await sim.get(f"{PD}/regions")
    assert first.json()["count"] == 30_000
    again = await sim.get(f"{PD}/regions")
    assert again.content == first.content  # served from the per-region cache, identical
    await sim.inject(kind="kill_store", store_id=7)
    sim.advance(610, step=10)
    down = (await sim.get(f"{PD}/regions/check/down-peer")).json()
    assert down["count"] == sim.cluster.stores[7].region_count == 300
    changed = await sim.get(f"{PD}/regions")
    assert changed.content != first.content
