"""PD's error statuses and bodies: the JSON-string shape and the errcode-object shape."""

from __future__ import annotations

import logging

import pytest
from tikv_sim_helpers import PD


def errcode(msg: str, data: object) -> dict[str, object]:
    return {"code": "input", "msg": msg, "data": data}


async def expect(resp, status: int, body: object) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json; charset=UTF-8"
    assert resp.json() == body
    assert resp.content.endswith(b"\n")


async def test_store_errors(sim) -> None:
    r = await sim.get(f"{PD}/store/abc")
    await expect(r, 400, errcode('strconv.ParseUint: parsing "abc": invalid syntax', {}))
    assert r.headers["TiDB-Error-Code"] == "input"
    await expect(await sim.get(f"{PD}/store/9"), 404, "[PD:core:ErrStoreNotFound]store 9 not found")
    await expect(await sim.delete(f"{PD}/store/9"), 404, "[PD:core:ErrStoreNotFound]store 9 not found")
    await expect(
        await sim.post(f"{PD}/store/1/state", params={"state": "Tombstone"}), 400, "invalid state Tombstone"
    )
    await expect(
        await sim.post(f"{PD}/store/9/state", params={"state": "Up"}),
        404,
        "[PD:core:ErrStoreNotFound]store 9 not found",
    )
    await expect(
        await sim.get(f"{PD}/stores", params={"state": "x"}), 500, 'strconv.Atoi: parsing "x": invalid syntax'
    )
    await expect(await sim.get(f"{PD}/stores", params={"state": "5"}), 500, "unknown StoreState: 5")
    await expect(await sim.get(f"{PD}/stores/check", params={"state": "foo"}), 400, "unknown StoreState: foo")


async def test_delete_store_errors(sim) -> None:
    await expect(await sim.delete(f"{PD}/store/4", params={"force": ""}), 200, "The store is set as Offline.")
    await expect(await sim.delete(f"{PD}/store/4", params={"force": ""}), 200, "The store is set as Offline.")
    destroyed = "[PD:core:ErrStoreDestroyed]store 4 has been physically destroyed"
    await expect(await sim.delete(f"{PD}/store/4"), 400, destroyed)
    await expect(await sim.post(f"{PD}/store/4/state", params={"state": "Up"}), 400, destroyed)
    sim.advance(900)
    assert (await sim.store(4))["store"]["state_name"] == "Tombstone"
    await expect(await sim.delete(f"{PD}/store/4"), 410, "[PD:core:ErrStoreRemoved]store 4 has been removed")
    await expect(
        await sim.post(f"{PD}/store/4/state", params={"state": "Up"}),
        410,
        "[PD:core:ErrStoreRemoved]store 4 has been removed",
    )


async def test_delete_store_refusals(make_manual) -> None:
    three = await make_manual(stores=3, regions=12)
    await expect(
        await three.delete(f"{PD}/store/1"),
        400,
        "[PD:core:ErrStoresNotEnough]can not remove store 1 since the number of up stores would be 2 while need 3",
    )
    four = await make_manual(stores=4, regions=12)
    for sid in (2, 3, 4):
        await four.post(f"{PD}/schedulers", json={"name": "evict-leader-scheduler", "store_id": sid})
    await expect(
        await four.delete(f"{PD}/store/1"),
        400,
        "[PD:core:ErrNoStoreForRegionLeader]can not remove store 1 since there are no extra up store to store the leader",
    )


async def test_weight_errors(sim) -> None:
    await expect(await sim.post(f"{PD}/store/1/weight", json={"region": 1}), 400, "leader weight unset")
    await expect(await sim.post(f"{PD}/store/1/weight", json={"leader": 1}), 400, "region weight unset")
    await expect(
        await sim.post(f"{PD}/store/1/weight", json={"leader": "x", "region": 1}),
        400,
        "bad format leader weight",
    )
    await expect(
        await sim.post(f"{PD}/store/1/weight", json={"leader": 1, "region": -1}),
        400,
        "bad format region weight",
    )
    await expect(
        await sim.post(f"{PD}/store/9/weight", json={"leader": 1, "region": 1}),
        500,
        "[PD:core:ErrStoreNotFound]store 9 not found",
    )


async def test_region_errors(sim) -> None:
    await expect(
        await sim.get(f"{PD}/region/id/abc"), 400, 'strconv.ParseUint: parsing "abc": invalid syntax'
    )
    await expect(
        await sim.get(f"{PD}/region/id/0"),
        400,
        {"class": 0, "code": 0, "message": "invalid region id", "rfccode": "PD:region:ErrRegionInvalidID"},
    )
    await expect(
        await sim.get(f"{PD}/region/id/999999"), 404, "[PD:region:ErrRegionNotFound]region 999999 not found"
    )
    await expect(
        await sim.get(f"{PD}/region/key/zz", params={"format": "hex"}),
        400,
        "encoding/hex: invalid byte: U+007A 'z'",
    )
    await expect(
        await sim.get(f"{PD}/region/key/abc", params={"format": "hex"}),
        400,
        "encoding/hex: odd length hex string",
    )
    r = await sim.get(f"{PD}/regions/check/no-such-check")
    assert r.status_code == 404 and r.text == "404 page not found\n"


@pytest.mark.parametrize(
    ("raw", "msg", "offset"),
    [
        (b"{bad", "invalid character 'b' looking for beginning of object key string", 2),
        (b"fo", "invalid character 'o' in literal false (expecting 'a')", 2),
        (b'{"name": }', "invalid character '}' looking for beginning of value", 10),
        (b'{"name"', "unexpected end of JSON input", 7),
        (b"", "unexpected end of JSON input", 0),
    ],
)
async def test_malformed_json_gets_errcode(sim, raw: bytes, msg: str, offset: int) -> None:
    r = await sim.post(f"{PD}/operators", content=raw)
    await expect(r, 400, errcode(msg, {"Offset": offset}))


async def test_json_of_the_wrong_type(sim) -> None:
    r = await sim.post(f"{PD}/operators", content=b"[1, 2]")
    assert r.status_code == 400
    assert r.json()["msg"] == "json: cannot unmarshal array into Go value of type map[string]interface {}"


async def test_operator_creation_errors(sim) -> None:
    c = sim.cluster
    region = next(iter(c.regions.values()))
    leader = region.leader.store_id
    follower = next(p.store_id for p in region.peers if p.store_id != leader)
    outsider = next(s for s in c.stores if region.peer_on(s) is None)
    rid = region.id

    async def op(body: dict, status: int, message: str) -> None:
        await expect(await sim.post(f"{PD}/operators", json=body), status, message)

    await op({}, 400, "missing operator name")
    await op({"name": "fly"}, 400, "unknown operator")
    await op({"name": "transfer-leader"}, 400, "missing region id")
    await op({"name": "transfer-leader", "region_id": rid}, 400, "missing store id to transfer leader to")
    await op(
        {"name": "transfer-leader", "region_id": 999999, "to_store_id": 1},
        500,
        "[PD:region:ErrRegionNotFound]region 999999 not found",
    )
    await op(
        {"name": "transfer-leader", "region_id": rid, "to_store_id": outsider},
        500,
        f"region has no voter in store {outsider}",
    )
    await op(
        {"name": "transfer-leader", "region_id": rid, "to_store_id": leader}, 500, "no operator step is built"
    )
    await op({"name": "transfer-peer", "region_id": rid}, 400, "invalid store id to transfer peer from")
    await op(
        {"name": "transfer-peer", "region_id": rid, "from_store_id": leader},
        400,
        "invalid store id to transfer peer to",
    )
    await op(
        {"name": "transfer-peer", "region_id": rid, "from_store_id": outsider, "to_store_id": 1},
        500,
        f"region has no peer in store {outsider}",
    )
    await op({"name": "add-peer", "region_id": rid}, 400, "invalid store id to transfer peer to")
    await op(
        {"name": "add-peer", "region_id": rid, "store_id": follower},
        500,
        f"region already has peer in store {follower}",
    )
    await op(
        {"name": "add-peer", "region_id": rid, "store_id": 42},
        500,
        "[PD:core:ErrStoreNotFound]store 42 not found",
    )
    await op(
        {"name": "remove-peer", "region_id": rid, "store_id": outsider},
        500,
        f"region has no peer in store {outsider}",
    )
    await op({"name": "merge-region", "source_region_id": rid}, 400, "invalid target region id to merge to")
    far = max(c.regions.values(), key=lambda r: r.start)
    await op(
        {"name": "merge-region", "source_region_id": rid, "target_region_id": far.id},
        500,
        "[PD:region:ErrRegionNotAdjacent]two regions are not adjacent",
    )
    await op({"name": "split-region", "region_id": rid}, 400, "missing split policy")
    await op(
        {"name": "split-region", "region_id": rid, "policy": "foo"}, 500, "check policy foo is not supported"
    )
    await op(
        {"name": "split-region", "region_id": rid, "policy": "usekey", "keys": [1]}, 400, "bad format keys"
    )
    await op(
        {"name": "split-region", "region_id": rid, "policy": "usekey", "keys": ["zz"]},
        500,
        "split key zz is not in hex format",
    )
    # one admin operator per region
    await op(
        {"name": "transfer-leader", "region_id": rid, "to_store_id": follower},
        200,
        "The operator is created.",
    )
    await op(
        {"name": "add-peer", "region_id": rid, "store_id": outsider},
        500,
        "[PD:operator:ErrAddOperator]failed to add operator, maybe already have one",
    )


async def test_operator_target_state_errors(sim) -> None:
    c = sim.cluster
    await sim.inject(kind="kill_store", store_id=2)
    sim.advance(40)  # store 2 is Disconnected now
    region = next(r for r in c.regions.values() if r.peer_on(2) is not None and r.leader is not None)
    await expect(
        await sim.post(
            f"{PD}/operators", json={"name": "transfer-leader", "region_id": region.id, "to_store_id": 2}
        ),
        500,
        "cannot create operator: target leader is not allowed",
    )
    other = next(r for r in c.regions.values() if r.peer_on(2) is None and r.leader is not None)
    sim.advance(600)  # more than 10 minutes without a heartbeat: unhealthy
    await expect(
        await sim.post(f"{PD}/operators", json={"name": "add-peer", "region_id": other.id, "store_id": 2}),
        500,
        "[PD:core:ErrStoreUnhealthy]store 2 is unhealthy",
    )
    down = next(r for r in c.regions.values() if r.peer_on(2) is not None)
    neighbour = c.region_by_key(down.end) if down.end else None
    if neighbour is not None:
        await expect(
            await sim.post(
                f"{PD}/operators",
                json={"name": "merge-region", "source_region_id": down.id, "target_region_id": neighbour.id},
            ),
            500,
            f"[PD:region:ErrRegionAbnormalPeer]region {down.id} has abnormal peer",
        )


async def test_operator_lookup_errors(sim) -> None:
    await expect(
        await sim.get(f"{PD}/operators/abc"), 400, 'strconv.ParseUint: parsing "abc": invalid syntax'
    )
    await expect(
        await sim.get(f"{PD}/operators/999999"), 500, "[PD:operator:ErrOperatorNotFound]operator not found"
    )
    await expect(
        await sim.delete(f"{PD}/operators/999999"), 500, "[PD:operator:ErrOperatorNotFound]operator not found"
    )


async def test_scheduler_errors(sim) -> None:
    async def add(body: dict, status: int, message: str) -> None:
        await expect(await sim.post(f"{PD}/schedulers", json=body), status, message)

    await add({}, 400, "missing scheduler name")
    await add({"name": "no-such-scheduler"}, 400, "unknown scheduler")
    await add(
        {"name": "balance-leader-scheduler"}, 400, "[PD:scheduler:ErrSchedulerExisted]scheduler existed"
    )
    await add({"name": "evict-leader-scheduler"}, 400, "missing store id")
    await add({"name": "evict-leader-scheduler", "store_id": "x"}, 400, "please input a right store id")
    await add(
        {"name": "evict-leader-scheduler", "store_id": 99},
        400,
        "[PD:core:ErrStoreNotFound]store 99 not found",
    )
    not_found = "[PD:scheduler:ErrSchedulerNotFound]scheduler not found"
    await expect(await sim.delete(f"{PD}/schedulers/no-such-scheduler"), 404, not_found)
    await expect(
        await sim.post(f"{PD}/schedulers/balance-leader-scheduler", json={}), 400, "missing pause time"
    )
    await expect(await sim.get(f"{PD}/scheduler-config/evict-leader-scheduler/list"), 404, not_found)
    r = await sim.delete(f"{PD}/schedulers/evict-leader-scheduler-3")
    assert r.status_code == 404 and r.content == b"null\n"


async def test_config_errors(sim) -> None:
    await expect(
        await sim.post(f"{PD}/config", json={"no-such-item": 1}), 400, "config item no-such-item not found"
    )
    await expect(
        await sim.post(f"{PD}/config", json={"max-store-down-time": "abc"}),
        400,
        'time: invalid duration "abc"',
    )
    r = await sim.post(f"{PD}/config", json={"leader-schedule-limit": "8"})
    assert r.status_code == 400 and "cannot unmarshal string" in r.json()
    await expect(
        await sim.post(f"{PD}/config/schedule", json={"max-replicas": 5}),
        400,
        "config item max-replicas not found",
    )
    # nothing was half-applied
    assert (await sim.get(f"{PD}/config/schedule")).json()["leader-schedule-limit"] == 4


async def test_unknown_routes(sim) -> None:
    r = await sim.get(f"{PD}/no/such/route")
    assert r.status_code == 404 and r.text == "404 page not found\n"
    r = await sim.get("/sim/v1/nothing")
    assert r.status_code == 404 and "error" in r.json()
    # PD's port serves only PD's API: the fault API and host control are elsewhere
    for path in ("/sim/v1/faults", "/sim/v1/info", "/host/v1/stores"):
        r = await sim.client.get(path)
        assert r.status_code == 404 and r.text == "404 page not found\n", path
    r = await sim.client.post("/sim/v1/faults", json={"kind": "kill_store", "store_id": 1})
    assert r.status_code == 404 and sim.cluster.stores[1].running


async def test_unexpected_exception_becomes_a_500_with_a_body(sim, monkeypatch, caplog) -> None:
    from subjects.tikv.sim import pd_views

    def broken(_cluster):
        raise RuntimeError("boom")

    monkeypatch.setattr(pd_views, "hot_stores", broken)
    with caplog.at_level(logging.ERROR):
        r = await sim.get(f"{PD}/hotspot/stores")
    assert r.status_code == 500 and "RuntimeError: boom" in r.json()
    assert any("hotspot/stores" in rec.getMessage() for rec in caplog.records)
    assert (await sim.get(f"{PD}/ping")).status_code == 200


async def test_garbage_never_crashes_the_server(sim) -> None:
    bodies = [
        b"",
        b"null",
        b"[]",
        b"{}",
        b'"x"',
        b"1e999",
        b"{" * 5000,
        b"\xff\xfe",
        b'{"name": null}',
        b'{"region_id": -1}',
    ]
    routes = [
        f"{PD}/operators",
        f"{PD}/schedulers",
        f"{PD}/config",
        f"{PD}/config/schedule",
        f"{PD}/config/replicate",
        f"{PD}/store/1/weight",
        f"{PD}/store/1/limit",
        f"{PD}/stores/limit",
        f"{PD}/schedulers/balance-leader-scheduler",
        "/sim/v1/faults",
    ]
    for route in routes:
        for body in bodies:
            r = await sim.post(route, content=body)
            assert r.status_code in (200, 400, 404, 500), (route, body, r.status_code)
            if r.status_code == 500:
                assert "internal error" not in r.text, (route, body, r.text)
    assert (await sim.get(f"{PD}/ping")).status_code == 200
