"""The fault API and host control over real HTTP, on a manual clock."""

from __future__ import annotations

import asyncio
import itertools
import re

import httpx
import pytest
from tikv_sim_helpers import PD


async def status_get(address: str, path: str = "/status", timeout: float = 5.0) -> httpx.Response:
    async with httpx.AsyncClient(timeout=timeout) as client:
        return await client.get(f"http://{address}{path}")


def metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else "") + r" (\S+)"
    m = re.search(r"^" + pattern + "$", text, re.M)
    assert m, f"{name}{{{labels}}} not in metrics"
    return float(m.group(1))


async def test_kill_store_closes_its_port_and_revert_rebinds_it(sim) -> None:
    address = (await sim.store(1))["store"]["status_address"]
    before = (await status_get(address, "/metrics")).text
    started_before = metric(before, "process_start_time_seconds")
    led = sorted(sim.cluster.stores[1].leader_regions)
    fault = await sim.inject(kind="kill_store", store_id=1)
    assert (
        fault["id"] and fault["kind"] == "kill_store" and fault["store_id"] == 1 and fault["active"] is True
    )
    with pytest.raises(httpx.ConnectError):
        await status_get(address)
    hosts = (await sim.get("/sim/v1/stores")).json()
    assert hosts[0] == {
        "id": 1,
        "running": False,
        "status_address": address,
        "partitioned": False,
        "faults": [fault["id"]],
    }
    assert (await sim.get(f"{PD}/region/id/{led[0]}")).json()["leader"] == {"role_name": ""}
    sim.advance(30)
    store = await sim.store(1)
    assert store["store"]["state_name"] == "Disconnected"
    regions = (await sim.get(f"{PD}/regions")).json()["regions"]
    assert all(r["leader"].get("store_id") not in (None, 1) for r in regions)
    reverted = await sim.revert(fault["id"])
    assert reverted["active"] is False and reverted["reverted_at"] >= reverted["injected_at"]
    assert (await sim.store(1))["store"]["state_name"] == "Up"
    await asyncio.sleep(0)  # let the re-bound socket start serving
    r = await status_get(address, "/metrics")
    assert r.status_code == 200
    assert metric(r.text, "process_start_time_seconds") > started_before  # a new process: counters reset
    assert metric(r.text, "tikv_storage_command_total", 'type="get"') < metric(
        before, "tikv_storage_command_total", 'type="get"'
    )
    again = await sim.revert(fault["id"])  # reverting twice is a harmless no-op
    assert again == reverted
    assert (await sim.get(f"{PD}/regions/check/pending-peer")).json()["count"] > 0  # catching up
    sim.advance(300)
    assert (await sim.store(1))["status"]["leader_count"] > 0  # leaders come back via balance-leader


async def test_store_metrics_names(sim) -> None:
    address = (await sim.store(2))["store"]["status_address"]
    sim.advance(5)
    text = (await status_get(address, "/metrics")).text
    for series in (
        'tikv_raftstore_region_count{type="region"}',
        'tikv_raftstore_region_count{type="leader"}',
        'tikv_raftstore_region_count{type="buckets"}',
        'tikv_store_size_bytes{type="capacity"}',
        'tikv_store_size_bytes{type="available"}',
        'tikv_store_size_bytes{type="used"}',
        'tikv_engine_size_bytes{db="kv",type="default"}',
        'tikv_grpc_msg_duration_seconds_bucket{type="kv_get",priority="unknown",le="0.00005"}',
        'tikv_grpc_msg_duration_seconds_bucket{type="kv_get",priority="unknown",le="104.8576"}',
        'tikv_grpc_msg_duration_seconds_bucket{type="kv_prewrite",priority="unknown",le="+Inf"}',
        'tikv_grpc_msg_duration_seconds_count{type="kv_commit",priority="unknown"}',
        'tikv_grpc_msg_fail_total{type="kv_get"}',
        'tikv_scheduler_command_duration_seconds_bucket{type="prewrite",le="0.00001"}',
        'tikv_scheduler_too_busy_total{type="prewrite"}',
        "tikv_scheduler_contex_total",
        'tikv_raftstore_slow_score{type="raft"}',
        'tikv_raftstore_slow_score{type="kvdb"}',
        'tikv_storage_command_total{type="get"}',
        "tikv_raftstore_leader_missing",
        'tikv_thread_cpu_seconds_total{name="raftstore_2_0"',
        "process_start_time_seconds",
    ):
        assert series in text, series
    assert metric(text, "tikv_raftstore_region_count", 'type="leader"') == sim.cluster.stores[2].leader_count
    buckets = [
        float(v)
        for v in re.findall(
            r'^tikv_grpc_msg_duration_seconds_bucket\{type="kv_get",[^}]*\} (\S+)$', text, re.M
        )
    ]
    assert len(buckets) == 23 and buckets == sorted(buckets)
    assert buckets[-1] == metric(
        text, "tikv_grpc_msg_duration_seconds_count", 'type="kv_get",priority="unknown"'
    )
    assert (await status_get(address, "/status")).content == b""
    assert (await status_get(address, "/nope")).status_code == 404


async def test_leaderless_requests_count_as_failures(sim) -> None:
    await sim.inject(kind="kill_store", store_id=3)
    wl = (await sim.get("/sim/v1/workload")).json()
    assert wl["error_rate"] > 0
    sim.advance(5)
    failing = 0
    for sid in (1, 2, 4, 5):
        text = (await status_get((await sim.store(sid))["store"]["status_address"], "/metrics")).text
        failing += metric(text, "tikv_grpc_msg_fail_total", 'type="kv_get"')
        if metric(text, "tikv_raftstore_leader_missing") > 0:
            failing += 1
    assert failing > 0
    sim.advance(20)
    assert (await sim.get("/sim/v1/workload")).json()["error_rate"] == 0


async def test_slow_store(sim) -> None:
    address = (await sim.store(4))["store"]["status_address"]
    base = (await sim.get("/sim/v1/workload")).json()["per_store"]["4"]["p99_ms"]
    fault = await sim.inject(kind="slow_store", store_id=4, latency_ms=300)
    assert fault["latency_ms"] == 300
    assert (await sim.get("/sim/v1/workload")).json()["per_store"]["4"]["p99_ms"] > base + 250
    sim.advance(45)
    assert (await sim.store(4))["status"]["slow_score"] == 100
    assert (
        metric((await status_get(address, "/metrics")).text, "tikv_raftstore_slow_score", 'type="raft"')
        == 100
    )
    assert 'pd_cluster_status{type="store_slow_count"} 1' in (await sim.get("/metrics")).text
    await sim.revert(fault["id"])
    sim.advance(45)
    assert (await sim.store(4))["status"]["slow_score"] == 1


async def test_disk_full(sim) -> None:
    fault = await sim.inject(kind="disk_full", store_id=5, used_ratio=0.9)
    status = (await sim.store(5))["status"]
    text = (await status_get((await sim.store(5))["store"]["status_address"], "/metrics")).text
    capacity = metric(text, "tikv_store_size_bytes", 'type="capacity"')
    available = metric(text, "tikv_store_size_bytes", 'type="available"')
    assert available / capacity == pytest.approx(0.1, abs=0.001)
    assert status["available"].endswith("GiB") and float(status["available"][:-3]) < 60
    assert 'pd_cluster_status{type="store_low_space_count"} 1' in (await sim.get("/metrics")).text
    await sim.revert(fault["id"])
    assert 'pd_cluster_status{type="store_low_space_count"} 0' in (await sim.get("/metrics")).text


async def test_partition_keeps_the_status_port_but_cuts_pd(sim) -> None:
    address = (await sim.store(2))["store"]["status_address"]
    fault = await sim.inject(kind="partition_store", store_id=2)
    assert (await status_get(address)).status_code == 200
    sim.advance(30)
    assert (await sim.store(2))["store"]["state_name"] == "Disconnected"
    assert (await sim.store(2))["status"]["leader_count"] == 0
    assert not sim.cluster.leaderless
    other = (await sim.store(1))["store"]["status_address"]
    text = (await status_get(other, "/metrics")).text
    assert metric(text, "tikv_server_report_failure_msg_total", 'type="unreachable",store_id="2"') > 0
    hosts = (await sim.get("/sim/v1/stores")).json()
    assert hosts[1]["partitioned"] is True and hosts[1]["running"] is True
    await sim.revert(fault["id"])
    assert (await sim.store(2))["store"]["state_name"] == "Up"


async def test_hot_region(sim) -> None:
    region = next(iter(sim.cluster.regions.values()))
    leader = region.leader.store_id
    before = (await sim.get("/sim/v1/workload")).json()["per_store"][str(leader)]["qps"]
    fault = await sim.inject(kind="hot_region", region_id=region.id, qps=6000)
    read = (await sim.get(f"{PD}/hotspot/regions/read")).json()
    assert [s["region_id"] for s in read["as_leader"][str(leader)]["statistics"]] == [region.id]
    after = (await sim.get("/sim/v1/workload")).json()["per_store"][str(leader)]["qps"]
    assert after == pytest.approx(before + 6000, rel=0.01)
    await sim.revert(fault["id"])
    read = (await sim.get(f"{PD}/hotspot/regions/read")).json()
    assert all(not v["statistics"] for v in read["as_leader"].values())


async def test_skew_leaders_and_revert(sim) -> None:
    fault = await sim.inject(kind="skew_leaders", store_id=3)
    status = (await sim.store(3))["status"]
    assert status["leader_count"] == status["region_count"]
    assert "balance-leader-scheduler" not in (await sim.get(f"{PD}/schedulers")).json()
    sim.advance(120)
    assert (await sim.store(3))["status"]["leader_count"] == status["region_count"]  # stays skewed
    await sim.revert(fault["id"])
    assert "balance-leader-scheduler" in (await sim.get(f"{PD}/schedulers")).json()
    sim.advance(600)
    counts = [(await sim.store(sid))["status"]["leader_count"] for sid in range(1, 6)]
    assert max(counts) - min(counts) <= 2


async def test_pd_down_drops_pd_routes_only(sim) -> None:
    fault = await sim.inject(kind="pd_down")
    for path in (f"{PD}/stores", f"{PD}/health", "/metrics"):
        with pytest.raises(httpx.RemoteProtocolError):
            await sim.get(path)
    assert (await sim.get("/sim/v1/info")).status_code == 200
    await sim.revert(fault["id"])
    assert (await sim.get(f"{PD}/stores")).status_code == 200


async def test_pd_garbage(sim) -> None:
    fault = await sim.inject(kind="pd_garbage")
    r = await sim.get(f"{PD}/stores")
    assert r.status_code == 200
    with pytest.raises(ValueError):
        r.json()
    metrics = await sim.get("/metrics")
    assert metrics.status_code == 200 and b"pd_cluster_status{" in metrics.content
    await sim.revert(fault["id"])
    assert (await sim.get(f"{PD}/stores")).json()["count"] == 5


async def test_status_hang(sim) -> None:
    address = (await sim.store(3))["store"]["status_address"]
    fault = await sim.inject(kind="status_hang", store_id=3)
    with pytest.raises(httpx.ReadTimeout):
        await status_get(address, timeout=0.5)
    pending = asyncio.ensure_future(status_get(address, timeout=10))
    await asyncio.sleep(0.2)
    assert not pending.done()
    await sim.revert(fault["id"])
    assert (await pending).status_code == 200  # the held request is answered once the hang ends
    assert (await status_get(address)).status_code == 200


async def test_fault_listing_and_lookup(sim) -> None:
    a = await sim.inject(kind="slow_store", store_id=1, latency_ms=50)
    b = await sim.inject(kind="pd_garbage")
    await sim.revert(b["id"])
    listing = (await sim.get("/sim/v1/faults")).json()
    assert [f["id"] for f in listing] == [a["id"], b["id"]]
    assert (
        listing[0]["active"] is True and listing[0]["reverted_at"] is None and listing[0]["latency_ms"] == 50
    )
    assert listing[1]["active"] is False and listing[1]["reverted_at"] is not None
    assert (await sim.get(f"/sim/v1/faults/{a['id']}")).json()["kind"] == "slow_store"
    r = await sim.delete("/sim/v1/faults/nope")
    assert r.status_code == 404 and r.json() == {"error": "fault nope not found"}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, 'missing "kind"'),
        ({"kind": "meteor"}, "unknown fault kind 'meteor'"),
        ({"kind": "kill_store"}, "store_id: is required"),
        ({"kind": "kill_store", "store_id": 42}, "store 42 not found"),
        ({"kind": "kill_store", "store_id": "1"}, "store_id"),
        ({"kind": "kill_store", "store_id": 1, "extra": 1}, "extra: is not a parameter"),
        ({"kind": "slow_store", "store_id": 1, "latency_ms": 0}, "latency_ms"),
        ({"kind": "disk_full", "store_id": 1, "used_ratio": 1.5}, "used_ratio"),
        ({"kind": "hot_region", "region_id": 1}, "region 1 not found"),
        ({"kind": "hot_region", "region_id": 6, "qps": -5}, "qps"),
        ({"kind": "status_hang"}, "store_id: is required"),
        ([1, 2], "JSON object"),
    ],
)
async def test_bad_fault_requests(sim, body, needle: str) -> None:
    r = await sim.post("/sim/v1/faults", json=body)
    assert r.status_code == 400
    assert needle in r.json()["error"]


async def test_bad_fault_bodies(sim) -> None:
    r = await sim.post("/sim/v1/faults", content=b"{nope")
    assert r.status_code == 400 and r.json()["error"].startswith("invalid JSON body")
    r = await sim.post("/sim/v1/faults", content=b"")
    assert r.status_code == 400
    # curl -d sends a form content type: JSON is accepted regardless
    r = await sim.post(
        "/sim/v1/faults",
        content=b'{"kind":"pd_garbage"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200


async def test_conflicting_faults(sim) -> None:
    await sim.inject(kind="kill_store", store_id=2)
    r = await sim.post("/sim/v1/faults", json={"kind": "kill_store", "store_id": 2})
    assert r.status_code == 400 and "already has an active kill_store" in r.json()["error"]
    await sim.inject(kind="pd_down")
    r = await sim.post("/sim/v1/faults", json={"kind": "pd_down"})
    assert r.status_code == 400


async def test_host_restart_and_stop(sim) -> None:
    address = (await sim.store(5))["store"]["status_address"]
    fault = await sim.inject(kind="kill_store", store_id=5)
    r = await sim.post("/sim/v1/stores/5/restart")
    assert r.status_code == 200
    assert r.json() == {
        "id": 5,
        "running": True,
        "status_address": address,
        "partitioned": False,
        "faults": [],
    }
    listing = (await sim.get("/sim/v1/faults")).json()
    assert (
        listing[0]["id"] == fault["id"]
        and listing[0]["active"] is False
        and listing[0]["reverted_by"] == "restart"
    )
    await asyncio.sleep(0)
    assert (await status_get(address)).status_code == 200
    r = await sim.post("/sim/v1/stores/5/stop")
    assert r.json()["running"] is False
    with pytest.raises(httpx.ConnectError):
        await status_get(address)
    assert (await sim.post("/sim/v1/stores/5/stop")).json()["running"] is False  # idempotent
    first = (await sim.post("/sim/v1/stores/5/restart")).json()
    assert first["running"] is True
    await asyncio.sleep(0)
    assert (await status_get(address)).status_code == 200
    assert (await sim.post("/sim/v1/stores/42/restart")).status_code == 404
    assert (await sim.post("/sim/v1/stores/x/stop")).status_code == 404


async def test_restart_of_a_running_store_loses_its_leaders_briefly(sim) -> None:
    before = sim.cluster.stores[4].leader_count
    assert before > 0
    await sim.post("/sim/v1/stores/4/restart")
    assert sim.cluster.stores[4].leader_count == 0
    assert len(sim.cluster.leaderless) == before
    sim.advance(20)
    assert not sim.cluster.leaderless


async def test_kill_drops_open_keep_alive_connections(sim) -> None:
    address = (await sim.store(2))["store"]["status_address"]
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=5) as client:
        assert (await client.get("/status")).status_code == 200  # the connection stays in the pool
        await sim.inject(kind="kill_store", store_id=2)
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.TransportError):
            await client.get("/status")


async def test_host_agent_listener_serves_only_host_control(sim) -> None:
    async with httpx.AsyncClient(base_url=sim.server.host_agent_url, timeout=10) as host:
        assert [h["id"] for h in (await host.get("/host/v1/stores")).json()] == [1, 2, 3, 4, 5]
        assert (await host.post("/host/v1/stores/3/stop")).json()["running"] is False
        assert not sim.cluster.stores[3].running
        assert (await host.post("/host/v1/stores/3/restart")).json()["running"] is True
        assert (await host.post("/sim/v1/faults", json={"kind": "pd_down"})).status_code == 404
        assert (await host.get("/pd/api/v1/stores")).status_code == 404
    assert sim.server.admin_url != sim.server.host_agent_url != sim.server.pd_url


async def test_fault_with_a_chosen_id_and_a_duration_ends_by_itself(sim) -> None:
    fault = await sim.inject(kind="kill_store", store_id=2, id="ev1a2b-1", duration_s=30)
    assert fault["id"] == "ev1a2b-1" and fault["expires_at"] == fault["injected_at"] + 30
    assert not sim.cluster.stores[2].running
    r = await sim.post("/sim/v1/faults", json={"kind": "slow_store", "store_id": 3, "id": "ev1a2b-1"})
    assert r.status_code == 400 and "already exists" in r.json()["error"]
    for bad in ({"id": "f9"}, {"id": "a b"}, {"duration_s": 0}, {"duration_s": "5"}, {"duration_s": True}):
        r = await sim.post("/sim/v1/faults", json={"kind": "slow_store", "store_id": 3, **bad})
        assert r.status_code == 400, bad
    sim.advance(31)
    listing = {f["id"]: f for f in (await sim.get("/sim/v1/faults")).json()}
    assert listing["ev1a2b-1"]["active"] is False and listing["ev1a2b-1"]["reverted_by"] == "expired"
    assert sim.cluster.stores[2].running
    assert (await sim.delete("/sim/v1/faults/ev1a2b-1")).json()["active"] is False  # idempotent


def test_workload_buckets_one_per_wall_second(live) -> None:
    import time

    time.sleep(2.5)
    buckets = httpx.get(f"{live.admin_url}/sim/v1/workload/buckets", timeout=5).json()
    assert len(buckets) >= 1
    b = buckets[-1]
    assert b["planned"] == b["ok"] + b["fail"] and b["planned"] > 0 and b["p99_ms"] > 0
    assert all(x["t_wall"] == int(x["t_wall"]) for x in buckets)
    assert all(a["t_wall"] < c["t_wall"] for a, c in itertools.pairwise(buckets))
    later = httpx.get(f"{live.admin_url}/sim/v1/workload/buckets", params={"after": b["t_wall"]}, timeout=5).json()
    assert all(x["t_wall"] > b["t_wall"] for x in later)
    assert httpx.get(f"{live.admin_url}/sim/v1/workload/buckets", params={"after": "x"}, timeout=5).status_code == 400
