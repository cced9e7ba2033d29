"""Same seed + same clock advances + same API calls => identical state and identical JSON."""

from __future__ import annotations

from tikv_sim_helpers import PD


async def scenario(sim) -> list[bytes]:
    out: list[bytes] = []
    fault = await sim.inject(kind="kill_store", store_id=2)
    sim.advance(45, step=0.5)
    out.append((await sim.get(f"{PD}/regions")).content)
    region = min(sim.cluster.regions)
    await sim.post(
        f"{PD}/operators", json={"name": "split-region", "region_id": region, "policy": "approximate"}
    )
    await sim.post(f"{PD}/schedulers", json={"name": "evict-leader-scheduler", "store_id": 3})
    sim.advance(30, step=2.0)
    out.append((await sim.get(f"{PD}/operators")).content)
    await sim.revert(fault["id"])
    await sim.inject(kind="hot_region", region_id=region, qps=3000)
    sim.advance(200, step=1.5)
    out.append((await sim.get(f"{PD}/regions")).content)
    stores = (await sim.get(f"{PD}/stores")).json()
    for s in stores["stores"]:
        s["store"].pop("status_address")  # the only thing that depends on the OS: the ports it gave us
    out.append(repr(stores).encode())
    out.append((await sim.get(f"{PD}/hotspot/regions/read")).content)
    out.append((await sim.get("/sim/v1/workload")).content)
    return out


async def test_two_runs_with_the_same_seed_answer_identically(make_manual) -> None:
    a = await make_manual(seed=21)
    b = await make_manual(seed=21)
    assert await scenario(a) == await scenario(b)


async def test_another_seed_gives_another_cluster(make_manual) -> None:
    a = await make_manual(seed=21)
    b = await make_manual(seed=22)
    assert (await a.get(f"{PD}/regions")).content != (await b.get(f"{PD}/regions")).content
