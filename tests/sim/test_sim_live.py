"""A threaded simulator on the wall clock at a high time scale: the timeline as a client sees it."""

from __future__ import annotations

import socket

import httpx
import pytest
from tikv_sim_helpers import PD, small_config, wait_for

from subjects.tikv.sim import SimThread, start_sim_thread


def refused(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_killed_store_timeline_and_recovery(live: SimThread) -> None:
    client = httpx.Client(base_url=live.pd_url, timeout=10)
    try:
        stores = client.get(f"{PD}/stores").json()["stores"]
        assert [s["store"]["state_name"] for s in stores] == ["Up"] * 5
        address = stores[0]["store"]["status_address"]
        assert httpx.get(f"http://{address}/status", timeout=5).status_code == 200
        fault = httpx.post(f"{live.admin_url}/sim/v1/faults", json={"kind": "kill_store", "store_id": 1}).json()
        assert refused(address)

        def state() -> str:
            return client.get(f"{PD}/store/1").json()["store"]["state_name"]

        wait_for(lambda: state() == "Disconnected", timeout=30)

        def all_led_elsewhere() -> bool:
            regions = client.get(f"{PD}/regions").json()["regions"]
            return all(r["leader"].get("store_id") not in (None, 1) for r in regions)

        wait_for(all_led_elsewhere, timeout=30)
        wait_for(lambda: state() == "Down", timeout=60)  # max-store-down-time is 3m here
        # PD then replaces the Down store's replicas on the spare stores
        wait_for(lambda: client.get(f"{PD}/store/1").json()["status"]["region_count"] == 0, timeout=60)
        assert client.get(f"{PD}/regions/check/miss-peer").json()["count"] == 0
        httpx.delete(f"{live.admin_url}/sim/v1/faults/{fault['id']}")
        assert state() == "Up"
        wait_for(lambda: httpx.get(f"http://{address}/status", timeout=5).status_code == 200, timeout=10)
    finally:
        client.close()


def test_thread_lifecycle_leaves_nothing_behind() -> None:
    sim = start_sim_thread(small_config(time_scale=10.0))
    url = sim.pd_url
    address = httpx.get(f"{url}{PD}/store/1", timeout=5).json()["store"]["status_address"]
    assert sim.call(lambda: len(sim.cluster.stores)) == 5
    sim.stop()
    sim.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}{PD}/ping", timeout=2)
    assert refused(address)
    with start_sim_thread(small_config(time_scale=10.0)) as second:
        assert httpx.get(f"{second.pd_url}{PD}/ping", timeout=5).status_code == 200


def free_block(count: int) -> int:
    """A base port B such that B+1..B+count were free a moment ago."""
    for _ in range(50):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        base = probe.getsockname()[1]
        probe.close()
        if base + count > 65535:
            continue
        held = []
        try:
            for i in range(1, count + 1):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise AssertionError("no free block of ports")


def test_status_ports_follow_the_base_port() -> None:
    for attempt in range(5):  # other processes share this machine's ports: retry on a lost race
        base = free_block(3)
        try:
            sim = start_sim_thread(small_config(stores=3, regions=9, status_base_port=base))
        except OSError:
            if attempt == 4:
                raise
            continue
        with sim:
            stores = httpx.get(f"{sim.pd_url}{PD}/stores", timeout=5).json()["stores"]
            assert [s["store"]["status_address"] for s in stores] == [
                f"127.0.0.1:{base + i}" for i in (1, 2, 3)
            ]
        return


def test_port_in_use_is_an_oserror() -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    try:
        with pytest.raises(OSError):
            start_sim_thread(small_config(port=blocker.getsockname()[1]))
    finally:
        blocker.close()


def test_busy_status_port_is_an_oserror_naming_the_store() -> None:
    base = free_block(2)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", base + 2))
    blocker.listen(1)
    try:
        with pytest.raises(OSError) as info:
            start_sim_thread(small_config(stores=2, regions=4, replicas=1, status_base_port=base))
    finally:
        blocker.close()
    assert f"status port {base + 2} of store 2" in str(info.value)
