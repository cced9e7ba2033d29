"""The behaviour model, driven with a manual timeline: no sleeping, no HTTP."""

from __future__ import annotations

import itertools

from tikv_sim_helpers import START, advance, make_cluster

from subjects.tikv.sim import metrics_text, pd_views
from subjects.tikv.sim.entities import OFFLINE, TOMBSTONE
from subjects.tikv.sim.errors import PDError
from subjects.tikv.sim.operators import create_admin_operator
from subjects.tikv.sim.schedulers import EvictLeader, GrantLeader


def leaders_on(c, sid: int) -> int:
    return sum(1 for r in c.regions.values() if r.leader is not None and r.leader.store_id == sid)


def test_initial_cluster_is_balanced_and_consistent() -> None:
    c = make_cluster()
    assert len(c.stores) == 5 and len(c.regions) == 60
    for r in c.regions.values():
        assert len(r.peers) == 3 and len({p.store_id for p in r.peers}) == 3
        assert r.leader is not None and r.leader in r.peers
    for s in c.stores.values():
        assert s.leader_count == leaders_on(c, s.id) == 12
        assert s.region_count == sum(1 for r in c.regions.values() if r.peer_on(s.id)) == 36
        assert c.state_name(s) == "Up"
    # key ranges tile the key space
    ordered = list(c.regions_in_key_order())
    assert ordered[0].start == b"" and ordered[-1].end == b""
    assert all(a.end == b.start for a, b in itertools.pairwise(ordered))


def test_killed_store_timeline_up_disconnected_down() -> None:
    c = make_cluster(max_store_down_time="2m")
    s = c.stores[1]
    c.stop_store(1)
    assert c.state_name(s) == "Up"  # PD has not noticed yet
    advance(c, 31)
    assert c.state_name(s) == "Disconnected"
    advance(c, 100)
    assert c.state_name(s) == "Down"
    c.start_store(1)
    assert c.state_name(s) == "Up"  # a restarted store heartbeats at once


def test_leaders_are_reelected_after_the_election_timeout() -> None:
    c = make_cluster()
    led = set(c.stores[1].leader_regions)
    c.stop_store(1)
    assert led and all(c.regions[rid].leader is None for rid in led)
    assert c.leaderless == led
    advance(c, 5)
    assert all(c.regions[rid].leader is None for rid in led)  # before the election timeout
    advance(c, 10)
    assert not c.leaderless
    assert all(c.regions[rid].leader.store_id != 1 for rid in led)
    assert c.stores[1].leader_count == 0


def test_no_quorum_means_no_leader_until_a_store_returns() -> None:
    c = make_cluster(stores=3, regions=12)
    c.stop_store(1)
    c.stop_store(2)
    advance(c, 60)
    assert len(c.leaderless) == 12
    assert all(r.leader is None for r in c.regions.values())
    c.start_store(2)
    advance(c, 30)
    assert not c.leaderless


def test_partitioned_store_loses_leaders_but_its_process_lives() -> None:
    c = make_cluster()
    c.partition_store(2)
    s = c.stores[2]
    assert s.running and not s.reachable
    advance(c, 30)
    assert s.leader_count == 0 and not c.leaderless
    assert c.state_name(s) == "Disconnected"
    c.heal_store(2)
    assert c.state_name(s) == "Up"
    assert 2 in c.catching_up  # its followers fell behind
    advance(c, 120)
    assert 2 not in c.catching_up
    assert s.leader_count > 0  # balance-leader brings leaders back


def test_down_and_pending_peers_after_ten_minutes() -> None:
    c = make_cluster(max_store_down_time="1h")
    c.stop_store(3)
    advance(c, 599)
    assert c.check_region_ids("down-peer") == []
    advance(c, 2)
    down = c.check_region_ids("down-peer")
    assert down == sorted(c.stores[3].peer_regions)
    r = c.regions[down[0]]
    ((peer, secs),) = c.down_peers(r)
    assert peer.store_id == 3 and 600 <= secs <= 602
    body = pd_views.region_json(c, r).decode()
    assert '"down_peers":[{"peer":{"role_name":"Voter"' in body and '"pending_peers":[' in body
    assert c.check_region_ids("pending-peer") == down


def test_replica_repair_after_store_down() -> None:
    c = make_cluster(max_store_down_time="2m")
    c.stop_store(1)
    advance(c, 110)
    assert c.stores[1].region_count == 36  # not Down yet: nothing moves
    advance(c, 400)
    assert c.stores[1].region_count == 0
    for r in c.regions.values():
        assert len(r.peers) == 3 and all(p.store_id != 1 for p in r.peers)
        assert not any(p.learner for p in r.peers)
    assert c.check_region_ids("miss-peer") == [] and c.check_region_ids("pending-peer") == []
    assert not c.operators.running


def test_no_spare_store_means_no_repair() -> None:
    c = make_cluster(stores=3, regions=12, max_store_down_time="1m")
    c.stop_store(3)
    advance(c, 300)
    assert c.stores[3].region_count == 12
    assert c.checker_events.get(("rule_checker", "no-store-replace"), 0) > 0
    assert not c.operators.running


def test_delete_store_moves_peers_then_tombstone() -> None:
    c = make_cluster()
    c.remove_store(2, force=False)
    s = c.stores[2]
    assert s.meta_state == OFFLINE and c.state_name(s) == "Offline"
    assert c.check_region_ids("offline-peer") == sorted(s.peer_regions)
    advance(c, 600)
    assert s.region_count == 0 and s.meta_state == TOMBSTONE
    assert c.state_name(s) == "Tombstone"


def test_cancel_delete_brings_the_store_back_up() -> None:
    c = make_cluster()
    c.remove_store(2, force=False)
    advance(c, 5)
    c.up_store(2)
    assert c.stores[2].meta_state == 0 and c.state_name(c.stores[2]) == "Up"
    advance(c, 120)
    assert c.stores[2].meta_state == 0


def test_remove_store_refused_when_too_few_up_stores() -> None:
    c = make_cluster(stores=3, regions=12)
    try:
        c.remove_store(1, force=False)
    except PDError as e:
        assert e.status == 400
        assert e.body == (
            "[PD:core:ErrStoresNotEnough]can not remove store 1 since the number of up stores would be 2 while need 3"
        )
    else:
        raise AssertionError("expected ErrStoresNotEnough")


def test_admin_transfer_leader_runs_and_succeeds() -> None:
    c = make_cluster()
    r = next(r for r in c.regions.values() if r.leader.store_id == 1)
    target = next(p.store_id for p in r.peers if p.store_id != 1)
    create_admin_operator(c, {"name": "transfer-leader", "region_id": r.id, "to_store_id": target})
    op = c.operators.get_status(r.id)
    assert op.status == "RUNNING" and op.desc == "admin-transfer-leader"
    advance(c, 2)
    assert r.leader.store_id == target
    assert op.status == "SUCCESS" and op.describe(START).endswith(" finished")
    advance(c, 599)
    assert c.operators.get_status(r.id) is op  # finished operators stay queryable for 10 minutes
    advance(c, 2)
    assert c.operators.get_status(r.id) is None


def test_operator_times_out_when_its_target_dies() -> None:
    c = make_cluster()
    r = next(r for r in c.regions.values() if r.leader.store_id == 1)
    target = next(p.store_id for p in r.peers if p.store_id != 1)
    create_admin_operator(c, {"name": "transfer-leader", "region_id": r.id, "to_store_id": target})
    c.stop_store(target)
    advance(c, 59)
    assert c.operators.get_status(r.id).status == "RUNNING"
    advance(c, 3)
    op = c.operators.get_status(r.id)
    assert op.status == "TIMEOUT" and op.describe(START).endswith(" timeout")


def test_add_peer_is_pending_during_its_snapshot_then_promoted() -> None:
    c = make_cluster()
    r = next(iter(c.regions.values()))
    spare = next(sid for sid in c.stores if r.peer_on(sid) is None)
    create_admin_operator(c, {"name": "add-peer", "region_id": r.id, "store_id": spare})
    peer = r.peer_on(spare)
    assert peer is not None and peer.learner
    assert r.id in c.check_region_ids("pending-peer") and r.id in c.check_region_ids("learner-peer")
    assert r.id in c.check_region_ids("extra-peer")
    for _ in range(60):
        advance(c, 0.5, step=0.5)
        if c.operators.get_status(r.id).status != "RUNNING":
            break
    assert c.operators.get_status(r.id).status == "SUCCESS"
    assert not peer.learner and not r.snapshot and len(r.peers) == 4
    advance(c, 30)
    assert len(r.peers) == 3  # then PD's checker trims the extra replica, as it would in PD


def test_split_and_merge() -> None:
    c = make_cluster()
    r = next(r for r in c.regions.values() if r.start and r.end)
    before = len(c.regions)
    start, end, version = r.start, r.end, r.version
    create_admin_operator(c, {"name": "split-region", "region_id": r.id, "policy": "approximate"})
    advance(c, 2)
    assert len(c.regions) == before + 1
    left = c.region_by_key(start)
    assert left is not r and left.end == r.start and r.end == end
    assert r.version == left.version == version + 1
    create_admin_operator(c, {"name": "merge-region", "source_region_id": left.id, "target_region_id": r.id})
    advance(c, 5)
    assert len(c.regions) == before and left.id not in c.regions
    assert r.start == start and r.end == end
    assert c.region_by_key(start) is r


def test_evict_leader_drains_and_blocks_then_removal_restores() -> None:
    c = make_cluster()
    ev = EvictLeader()
    ev.stores[1] = None
    c.schedulers.active[ev.name] = ev
    advance(c, 60)
    assert c.stores[1].leader_count == 0
    advance(c, 60)
    assert c.stores[1].leader_count == 0  # balance-leader may not move leaders back in
    del c.schedulers.active[ev.name]
    advance(c, 120)
    assert c.stores[1].leader_count >= 8


def test_grant_leader_pulls_leaders_in() -> None:
    c = make_cluster()
    del c.schedulers.active["balance-leader-scheduler"]
    g = GrantLeader()
    g.stores[2] = None
    c.schedulers.active[g.name] = g
    advance(c, 120)
    assert c.stores[2].leader_count == c.stores[2].region_count


def test_balance_leader_converges_without_ping_pong() -> None:
    c = make_cluster()
    c.stop_store(1)
    advance(c, 30)
    c.start_store(1)
    advance(c, 300)
    counts = [s.leader_count for s in c.stores.values()]
    assert max(counts) - min(counts) <= 1
    created = sum(
        n
        for (desc, event), n in c.operators.created_total.items()
        if desc == "balance-leader" and event == "create"
    )
    advance(c, 300)
    again = sum(
        n
        for (desc, event), n in c.operators.created_total.items()
        if desc == "balance-leader" and event == "create"
    )
    assert again == created  # balanced: no more moves


def test_slow_store_is_evicted_by_evict_slow_store() -> None:
    c = make_cluster()
    c.set_slow(4, 300.0)
    advance(c, 60)
    assert c.stores[4].hb_slow_score == 100
    advance(c, 60)
    assert c.stores[4].leader_count == 0
    c.set_slow(4, 0.0)
    advance(c, 60)
    assert c.stores[4].hb_slow_score == 1


def test_counters_grow_and_reset_when_the_process_restarts() -> None:
    c = make_cluster()
    s = c.stores[1]

    def gets() -> int:
        text = metrics_text.store_metrics(c, s).decode()
        line = next(x for x in text.splitlines() if x.startswith('tikv_storage_command_total{type="get"}'))
        return int(line.split()[-1])

    first = gets()
    advance(c, 10)
    second = gets()
    assert second > first > 0
    c.stop_store(1)
    c.start_store(1)
    advance(c, 1)
    assert gets() < second


def test_leaderless_requests_fail_on_a_live_peer() -> None:
    c = make_cluster()
    c.stop_store(1)
    view = c.workload_view()
    assert view["error_rate"] > 0
    assert sum(s.fail_read_qps + s.fail_write_qps for s in c.stores.values() if s.id != 1) > 0
    advance(c, 20)
    assert c.workload_view()["error_rate"] == 0


def test_disk_full_raises_the_region_score_and_blocks_writes() -> None:
    c = make_cluster()
    before = c.region_score(c.stores[2])
    c.set_disk_full(2, 0.995)
    assert c.region_score(c.stores[2]) > before * 1000
    assert c.is_low_space(c.stores[2])
    assert c.stores[2].fail_write_qps > 0
    c.set_disk_full(2, None)
    assert not c.is_low_space(c.stores[2]) and c.stores[2].fail_write_qps == 0


def test_hot_region_shows_up_as_hot() -> None:
    c = make_cluster()
    r = next(iter(c.regions.values()))
    c.set_region_extra_load(r, 5000.0, 1000.0)
    assert r.id in c.hot_read and r.id in c.hot_write
    hot = pd_views.hot_regions(c, "read", None)
    leader = str(r.leader.store_id)
    assert hot["as_leader"][leader]["regions_count"] == 1
    assert hot["as_leader"][leader]["statistics"][0]["region_id"] == r.id
    c.set_region_extra_load(r, 0.0, 0.0)
    assert r.id not in c.hot_read


def test_same_seed_same_history_same_state() -> None:
    def run() -> tuple[bytes, list]:
        c = make_cluster(seed=11, max_store_down_time="2m")
        c.stop_store(2)
        advance(c, 200, step=0.7)
        c.start_store(2)
        create_admin_operator(
            c, {"name": "split-region", "region_id": min(c.regions), "policy": "approximate"}
        )
        advance(c, 300, step=3.0)
        regions = b"".join(pd_views.regions_parts(c, list(c.regions_in_key_order())))
        stores = [pd_views.store_info(c, s) for s in c.stores.values()]
        return regions, stores

    assert run() == run()


def test_different_seeds_differ() -> None:
    a, b = make_cluster(seed=1), make_cluster(seed=2)
    assert [r.size for r in a.regions.values()] != [r.size for r in b.regions.values()]
