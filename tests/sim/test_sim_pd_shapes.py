"""PD v8.5 response shapes over real HTTP: field order, omitted fields, JSON style, content types."""

from __future__ import annotations

import json
import re

from tikv_sim_helpers import PD

JSON_CT = "application/json; charset=UTF-8"
BINARY_CT = "application/octet-stream"
STORE_KEYS_UP = [
    "id",
    "address",
    "version",
    "peer_address",
    "status_address",
    "git_hash",
    "start_timestamp",
    "deploy_path",
    "last_heartbeat",
    "node_state",
    "state_name",
]
REGION_KEYS = [
    "id",
    "start_key",
    "end_key",
    "epoch",
    "peers",
    "leader",
    "cpu_usage",
    "written_bytes",
    "read_bytes",
    "written_keys",
    "read_keys",
    "approximate_size",
    "approximate_keys",
    "approximate_kv_size",
]


async def test_stores_shape(sim) -> None:
    r = await sim.get(f"{PD}/stores")
    assert r.status_code == 200
    assert r.headers["content-type"] == JSON_CT
    assert r.content.startswith(b'{\n  "count": 5,\n  "stores": [\n') and r.content.endswith(b"}\n")
    body = r.json()
    assert body["count"] == 5 and [s["store"]["id"] for s in body["stores"]] == [1, 2, 3, 4, 5]
    entry = body["stores"][0]
    assert list(entry) == ["store", "status"]
    store = entry["store"]
    assert list(store) == STORE_KEYS_UP  # no "state" key: Up is the zero value
    assert store["state_name"] == "Up" and store["node_state"] == 1
    assert re.fullmatch(r"127\.0\.0\.1:\d+", store["status_address"])
    assert isinstance(store["last_heartbeat"], int) and store["last_heartbeat"] > 10**18
    status = entry["status"]
    assert list(status)[:11] == [
        "capacity",
        "available",
        "used_size",
        "leader_count",
        "leader_weight",
        "leader_score",
        "leader_size",
        "region_count",
        "region_weight",
        "region_score",
        "region_size",
    ]
    assert list(status)[-3:] == ["start_ts", "last_heartbeat_ts", "uptime"]
    assert re.fullmatch(r"\d+(\.\d+)?(B|KiB|MiB|GiB|TiB)", status["capacity"])
    assert status["leader_weight"] == 1 and b'"leader_weight": 1,' in r.content  # Go prints 1, not 1.0
    assert status["slow_score"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", status["start_ts"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", status["last_heartbeat_ts"])
    assert re.fullmatch(r"(\d+h)?(\d+m)?[\d.]+s", status["uptime"])
    assert "learner_count" not in status and "pending_peer_count" not in status


async def test_store_states_offline_and_tombstone(sim) -> None:
    r = await sim.delete(f"{PD}/store/5", params={"force": ""})
    assert r.status_code == 200 and r.content == b'"The store is set as Offline."\n'
    store = (await sim.store(5))["store"]
    assert store["state"] == 1 and store["node_state"] == 2 and store["state_name"] == "Offline"
    assert store["physically_destroyed"] is True
    assert list(store).index("state") == 2
    sim.advance(900)
    store = (await sim.store(5))["store"]
    assert store["state"] == 2 and store["node_state"] == 3 and store["state_name"] == "Tombstone"
    default = (await sim.get(f"{PD}/stores")).json()
    assert [s["store"]["id"] for s in default["stores"]] == [1, 2, 3, 4]  # Tombstone excluded by default
    only = (await sim.get(f"{PD}/stores", params={"state": "2"})).json()
    assert [s["store"]["id"] for s in only["stores"]] == [5]
    both = (await sim.get(f"{PD}/stores", params=[("state", "0"), ("state", "2")])).json()
    assert both["count"] == 5
    checked = (await sim.get(f"{PD}/stores/check", params={"state": "tombstone"})).json()
    assert [s["store"]["id"] for s in checked["stores"]] == [5]
    r = await sim.delete(f"{PD}/stores/remove-tombstone")
    assert r.json() == "Remove tombstone successfully."
    assert (await sim.get(f"{PD}/store/5")).status_code == 404


async def test_regions_are_compact_octet_stream(sim) -> None:
    r = await sim.get(f"{PD}/regions")
    assert r.status_code == 200 and r.headers["content-type"] == BINARY_CT
    assert r.content.startswith(b'{"count":60,"regions":[{"id":') and r.content.endswith(b"]}")
    assert b"\n" not in r.content and b": " not in r.content
    region = r.json()["regions"][0]
    assert list(region) == REGION_KEYS
    assert region["start_key"] == "" and re.fullmatch(r"[0-9A-F]+", region["end_key"])
    assert list(region["epoch"]) == ["conf_ver", "version"]
    assert list(region["peers"][0]) == ["role_name", "id", "store_id"]
    assert region["leader"]["role_name"] == "Voter" and region["leader"] in region["peers"]
    one = await sim.get(f"{PD}/region/id/{region['id']}")
    assert one.headers["content-type"] == BINARY_CT and json.loads(one.content) == region
    assert not one.content.endswith(b"\n")


async def test_region_by_key_raw_and_hex(sim) -> None:
    regions = (await sim.get(f"{PD}/regions")).json()["regions"]
    second = regions[1]
    raw_key = bytes.fromhex(second["start_key"]).decode()
    r = await sim.get(f"{PD}/region/key/{raw_key}")
    assert r.status_code == 200 and r.json()["id"] == second["id"]
    r = await sim.get(f"{PD}/region/key/{second['start_key']}", params={"format": "hex"})
    assert r.status_code == 200 and r.json()["id"] == second["id"]
    r = await sim.get(f"{PD}/region/key/a")
    assert r.json()["id"] == regions[0]["id"]  # "a" < "k...": the first region


async def test_leaderless_region_and_learner_shapes(sim) -> None:
    sid = 1
    led = sorted(sim.cluster.stores[sid].leader_regions)
    await sim.inject(kind="kill_store", store_id=sid)
    r = await sim.get(f"{PD}/region/id/{led[0]}")
    assert r.json()["leader"] == {"role_name": ""}
    assert b'"leader":{"role_name":""}' in r.content
    region = sim.cluster.regions[led[1]]
    spare = next(s for s in sim.cluster.stores if region.peer_on(s) is None and s != sid)
    sim.advance(15)
    op = await sim.post(
        f"{PD}/operators", json={"name": "add-learner", "region_id": region.id, "store_id": spare}
    )
    assert op.status_code == 200, op.text
    body = (await sim.get(f"{PD}/region/id/{region.id}")).json()
    learner = next(p for p in body["peers"] if p["store_id"] == spare)
    assert list(learner) == ["role_name", "is_learner", "id", "store_id", "role"]
    assert learner["role_name"] == "Learner" and learner["is_learner"] is True and learner["role"] == 1
    assert body["pending_peers"] == [learner]


async def test_region_checks_and_counts(sim) -> None:
    for kind in ("miss-peer", "extra-peer", "pending-peer", "down-peer", "learner-peer", "offline-peer"):
        r = await sim.get(f"{PD}/regions/check/{kind}")
        assert r.status_code == 200 and r.headers["content-type"] == BINARY_CT
        assert r.content == b'{"count":0,"regions":[]}'
    r = await sim.get(f"{PD}/regions/count")
    assert r.headers["content-type"] == JSON_CT
    assert r.content == b'{\n  "count": 60,\n  "regions": null\n}\n'


async def test_down_peer_check_after_ten_minutes(make_manual) -> None:
    sim = await make_manual(max_store_down_time="1h")
    await sim.inject(kind="kill_store", store_id=2)
    sim.advance(610)
    body = (await sim.get(f"{PD}/regions/check/down-peer")).json()
    assert body["count"] == sim.cluster.stores[2].region_count > 0
    entry = body["regions"][0]["down_peers"][0]
    assert list(entry) == ["peer", "down_seconds"] and entry["peer"]["store_id"] == 2
    assert 600 <= entry["down_seconds"] <= 620
    metrics = (await sim.get("/metrics")).text
    assert f'pd_regions_status{{type="down-peer-region-count"}} {body["count"]}' in metrics


async def test_stats_region(sim) -> None:
    r = await sim.get(f"{PD}/stats/region")
    body = r.json()
    assert list(body) == [
        "count",
        "empty_count",
        "storage_size",
        "user_storage_size",
        "storage_keys",
        "store_leader_count",
        "store_peer_count",
        "store_leader_size",
        "store_leader_keys",
        "store_peer_size",
        "store_peer_keys",
    ]
    assert body["count"] == 60 and sum(body["store_leader_count"].values()) == 60
    assert sum(body["store_peer_count"].values()) == 180
    assert list(body["store_peer_count"]) == ["1", "2", "3", "4", "5"]


async def test_cluster_members_health_leader_ping(sim) -> None:
    cluster = (await sim.get(f"{PD}/cluster")).json()
    assert list(cluster) == ["id", "max_peer_count"] and cluster["max_peer_count"] == 3
    status = (await sim.get(f"{PD}/cluster/status")).json()
    assert list(status) == ["raft_bootstrap_time", "is_initialized", "replication_status"]
    health = (await sim.get(f"{PD}/health")).json()
    assert health[0]["health"] is True and list(health[0]) == ["name", "member_id", "client_urls", "health"]
    members = (await sim.get(f"{PD}/members")).json()
    assert list(members) == ["header", "members", "leader", "etcd_leader"]
    assert members["members"][0]["client_urls"] == [sim.server.pd_url]
    leader = (await sim.get(f"{PD}/leader")).json()
    assert list(leader) == ["name", "member_id", "peer_urls", "client_urls"]
    ping = await sim.get(f"{PD}/ping")
    assert ping.status_code == 200 and ping.content == b""


async def test_operator_listings(sim) -> None:
    r = await sim.get(f"{PD}/operators")
    assert r.content == b"[]\n"
    r = await sim.get(f"{PD}/operators", params={"kind": "admin"})
    assert r.content == b"null\n"
    region = next(iter(sim.cluster.regions.values()))
    target = next(p.store_id for p in region.peers if p is not region.leader)
    src = region.leader.store_id
    created = await sim.post(
        f"{PD}/operators", json={"name": "transfer-leader", "region_id": region.id, "to_store_id": target}
    )
    assert created.content == b'"The operator is created."\n'
    listing = (await sim.get(f"{PD}/operators")).json()
    assert len(listing) == 1 and isinstance(listing[0], str)
    text = listing[0]
    assert text.startswith(
        f"admin-transfer-leader {{transfer leader: store {src} to {target}}} (kind:admin,leader, region:{region.id}("
    )
    assert f"steps:[0:{{transfer leader from store {src} to store {target}}}], timeout:[1m0s])" in text
    assert re.search(r"createAt:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC m=\+\d+\.\d{9}", text)
    objects = (await sim.get(f"{PD}/operators", params={"object": ""})).json()
    assert objects[0] == {
        "desc": "admin-transfer-leader",
        "brief": f"transfer leader: store {src} to {target}",
        "region_id": region.id,
        "region_epoch": {"conf_ver": region.conf_ver, "version": region.version},
        "kind": 129,
        "timeout": "1m0s",
        "status": 1,
    }
    assert (await sim.get(f"{PD}/operators", params={"kind": "leader"})).json() == listing
    status = (await sim.get(f"{PD}/operators/{region.id}")).json()
    assert status.startswith("status: RUNNING, operator: admin-transfer-leader {")
    sim.advance(2)
    status = (await sim.get(f"{PD}/operators/{region.id}")).json()
    assert status.startswith("status: SUCCESS, operator: ") and status.endswith(" finished")
    assert (await sim.get(f"{PD}/operators")).json() == []


async def test_operator_cancel_and_timeout_status(sim) -> None:
    region = next(iter(sim.cluster.regions.values()))
    spare = next(s for s in sim.cluster.stores if region.peer_on(s) is None)
    r = await sim.post(
        f"{PD}/operators", json={"name": "add-peer", "region_id": region.id, "store_id": spare}
    )
    assert r.status_code == 200
    text = (await sim.get(f"{PD}/operators/{region.id}")).json()
    assert (
        "steps:[0:{add learner peer " in text and f" on store {spare} to voter}}], timeout:[11m0s])" in text
    )
    r = await sim.delete(f"{PD}/operators/{region.id}")
    assert r.json() == "The pending operator is canceled."
    assert (
        (await sim.get(f"{PD}/operators/{region.id}"))
        .json()
        .startswith("status: CANCEL, operator: admin-add-peer")
    )
    assert region.peer_on(spare) is None  # the learner it had added is removed again
    other = next(r for r in sim.cluster.regions.values() if r.id != region.id and r.peer_on(spare) is None)
    await sim.post(f"{PD}/operators", json={"name": "add-peer", "region_id": other.id, "store_id": spare})
    await sim.inject(kind="kill_store", store_id=spare)
    sim.advance(11 * 60 + 5, step=5)
    assert (
        (await sim.get(f"{PD}/operators/{other.id}"))
        .json()
        .startswith("status: TIMEOUT, operator: admin-add-peer")
    )


async def test_schedulers_and_their_configs(sim) -> None:
    names = (await sim.get(f"{PD}/schedulers")).json()
    assert set(names) == {
        "balance-leader-scheduler",
        "balance-region-scheduler",
        "balance-hot-region-scheduler",
        "evict-slow-store-scheduler",
    }
    r = await sim.post(f"{PD}/schedulers", json={"name": "evict-leader-scheduler", "store_id": 1})
    assert r.json() == "The scheduler is created."
    r = await sim.post(f"{PD}/schedulers", json={"name": "evict-leader-scheduler", "store_id": 2})
    assert r.json() == "The scheduler has been applied to the store."
    config = await sim.get(f"{PD}/scheduler-config/evict-leader-scheduler/list")
    assert config.json() == {
        "store-id-ranges": {"1": [{"end-key": "", "start-key": ""}], "2": [{"end-key": "", "start-key": ""}]},
        "batch": 3,
    }
    assert "evict-leader-scheduler" in (await sim.get(f"{PD}/schedulers")).json()
    sim.advance(60)
    assert sim.cluster.stores[1].leader_count == 0 and sim.cluster.stores[2].leader_count == 0
    r = await sim.delete(f"{PD}/schedulers/evict-leader-scheduler-1")
    assert r.status_code == 200 and r.content == b"null\n"
    config = (await sim.get(f"{PD}/scheduler-config/evict-leader-scheduler/list")).json()
    assert list(config["store-id-ranges"]) == ["2"]
    r = await sim.delete(f"{PD}/schedulers/evict-leader-scheduler-1")
    assert r.status_code == 404 and r.content == b"null\n"
    r = await sim.delete(f"{PD}/schedulers/evict-leader-scheduler-2")
    assert r.status_code == 200
    assert "evict-leader-scheduler" not in (await sim.get(f"{PD}/schedulers")).json()
    sim.advance(120)
    assert sim.cluster.stores[1].leader_count > 0
    r = await sim.delete(f"{PD}/schedulers/balance-hot-region-scheduler")
    assert r.json() == "The scheduler is removed."
    r = await sim.post(f"{PD}/schedulers", json={"name": "balance-hot-region-scheduler"})
    assert r.json() == "The scheduler is created."
    r = await sim.post(f"{PD}/schedulers", json={"name": "grant-leader-scheduler", "store_id": 3})
    assert r.json() == "The scheduler is created."
    assert (await sim.get(f"{PD}/scheduler-config/grant-leader-scheduler/list")).json() == {
        "store-id-ranges": {"3": [{"end-key": "", "start-key": ""}]}
    }
    r = await sim.post(f"{PD}/schedulers/balance-leader-scheduler", json={"delay": 60})
    assert r.json() == "Pause or resume the scheduler successfully."
    assert (await sim.get(f"{PD}/schedulers", params={"status": "paused"})).json() == [
        "balance-leader-scheduler"
    ]


async def test_config_read_and_write(sim) -> None:
    config = (await sim.get(f"{PD}/config")).json()
    assert list(config)[:3] == ["client-urls", "peer-urls", "advertise-client-urls"]
    assert config["schedule"]["max-store-down-time"] == "30m0s"
    assert config["schedule"]["leader-schedule-limit"] == 4
    assert config["schedule"]["enable-cross-table-merge"] == "true"
    assert config["replication"]["max-replicas"] == 3
    r = await sim.post(f"{PD}/config", json={"max-store-down-time": "1h", "leader-schedule-limit": 8.0})
    assert r.content == b'"The config is updated."\n'
    schedule = (await sim.get(f"{PD}/config/schedule")).json()
    assert schedule["max-store-down-time"] == "1h0m0s" and schedule["leader-schedule-limit"] == 8
    assert sim.cluster.pd.max_store_down_time == 3600
    r = await sim.post(f"{PD}/config", json={"schedule.replica-schedule-limit": 16})
    assert r.status_code == 200 and sim.cluster.pd.replica_schedule_limit == 16
    r = await sim.post(f"{PD}/config/schedule", json={"region-schedule-limit": 10})
    assert r.status_code == 200 and sim.cluster.pd.region_schedule_limit == 10
    replicate = (await sim.get(f"{PD}/config/replicate")).json()
    assert replicate["max-replicas"] == 3 and replicate["enable-placement-rules"] == "true"


async def test_max_replicas_change_shows_miss_peers(sim) -> None:
    r = await sim.post(f"{PD}/config/replicate", json={"max-replicas": 4})
    assert r.status_code == 200
    body = (await sim.get(f"{PD}/regions/check/miss-peer")).json()
    assert body["count"] == 60
    assert (await sim.get(f"{PD}/cluster")).json()["max_peer_count"] == 4


async def test_hotspot_shapes(sim) -> None:
    region = next(iter(sim.cluster.regions.values()))
    await sim.inject(kind="hot_region", region_id=region.id, qps=8000)
    read = (await sim.get(f"{PD}/hotspot/regions/read")).json()
    assert list(read) == ["as_peer", "as_leader"]
    leader = str(region.leader.store_id)
    stat = read["as_leader"][leader]
    assert list(stat) == [
        "store_bytes",
        "store_keys",
        "store_query",
        "total_flow_bytes",
        "total_flow_keys",
        "total_flow_query",
        "regions_count",
        "statistics",
    ]
    entry = stat["statistics"][0]
    assert list(entry) == [
        "store_id",
        "stores",
        "is_leader",
        "is_learner",
        "region_id",
        "hot_degree",
        "flow_bytes",
        "flow_keys",
        "flow_query",
        "anti_count",
        "last_update_time",
    ]
    assert entry["region_id"] == region.id and entry["is_leader"] is True
    others = [sid for sid in read["as_leader"] if sid != leader]
    assert all(read["as_leader"][sid]["statistics"] == [] for sid in others)
    write = (await sim.get(f"{PD}/hotspot/regions/write")).json()
    assert sum(v["regions_count"] for v in write["as_peer"].values()) == 3
    only = (await sim.get(f"{PD}/hotspot/regions/read", params={"store_id": leader})).json()
    assert list(only["as_leader"]) == [leader]
    stores = (await sim.get(f"{PD}/hotspot/stores")).json()
    assert list(stores) == [
        "bytes-write-rate",
        "bytes-read-rate",
        "keys-write-rate",
        "keys-read-rate",
        "query-write-rate",
        "query-read-rate",
    ]


async def test_store_weight_and_progress(sim) -> None:
    r = await sim.post(f"{PD}/store/1/weight", json={"leader": 2, "region": 1.5})
    assert r.json() == "The store's weight is updated."
    status = (await sim.store(1))["status"]
    assert status["leader_weight"] == 2 and status["region_weight"] == 1.5
    assert status["leader_score"] == status["leader_count"] / 2
    r = await sim.delete(f"{PD}/store/3")
    assert r.status_code == 200
    sim.advance(10)
    progress = (await sim.get(f"{PD}/stores/progress", params={"id": "3"})).json()
    assert list(progress) == ["action", "store_id", "progress", "current_speed", "left_seconds"]
    assert progress["action"] == "removing" and 0 <= progress["progress"] < 1
    r = await sim.post(f"{PD}/store/3/state", params={"state": "Up"})
    assert r.json() == "The store's state is updated."
    assert (await sim.store(3))["store"]["state_name"] == "Up"


async def test_pd_metrics_styles(make_manual) -> None:
    agg = await make_manual()
    text = (await agg.get("/metrics")).text
    assert (await agg.get("/metrics")).headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'pd_cluster_status{type="store_up_count"} 5' in text
    assert 'pd_cluster_status{type="leader_count"} 60' in text
    assert 'pd_cluster_status{type="region_count"} 180' in text
    assert 'pd_regions_status{type="miss-peer-region-count"} 0' in text
    assert re.search(r'pd_scheduler_store_status\{address="[^"]+",store="1",type="leader_count"\} 12', text)
    assert "etcd_server_is_leader 1" in text
    per_store = await make_manual(pd_metrics_style="per_store")
    text = (await per_store.get("/metrics")).text
    assert 'pd_cluster_status{engine="tikv",store="1",type="store_up_count"} 1' in text
    assert 'pd_cluster_status{engine="tikv",store="3",type="leader_count"} 12' in text
    assert 'pd_cluster_status{type="store_up_count"}' not in text


async def test_sim_info_and_workload(sim) -> None:
    info = (await sim.get("/sim/v1/info")).json()
    assert set(info) == {"time_scale", "sim_now", "wall_now", "stores", "regions", "seed"}
    assert info["sim_now"] == sim.clock.now() and info["stores"] == 5 and info["regions"] == 60
    sim.advance(5)
    assert (await sim.get("/sim/v1/info")).json()["sim_now"] == sim.clock.now()
    wl = (await sim.get("/sim/v1/workload")).json()
    assert set(wl) == {"qps", "error_rate", "p99_ms", "per_store"}
    assert wl["qps"] > 0 and wl["error_rate"] == 0 and wl["p99_ms"] > 0
    assert set(wl["per_store"]) == {"1", "2", "3", "4", "5"}
