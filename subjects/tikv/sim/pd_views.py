"""The model rendered as PD v8.5 renders it: store objects, region JSON, operators, stats, hotspots.

Field order, omitted fields and number formats are PD's (see reference/pd-api.md). Region JSON is
compact, pre-serialised and cached on the region; every mutator of a region drops that cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from subjects.tikv.sim.entities import NODE_STATE, PREPARING, TOMBSTONE, UP
from subjects.tikv.sim.goformat import bytes_size, go_duration_ns, num, rfc3339nano, to_ns
from subjects.tikv.sim.workload import BYTES_PER_READ, BYTES_PER_WRITE, KEYS_PER_READ, KEYS_PER_WRITE

if TYPE_CHECKING:
    from subjects.tikv.sim.entities import Peer, Region, Store
    from subjects.tikv.sim.model import Cluster
    from subjects.tikv.sim.operators import Operator

PD_VERSION = "8.5.0"
PD_GIT_HASH = "e7f2b62d6bb3b4d0e2c5c63fbfee3e2f9c0a6a5d"
REGION_HEARTBEAT = 60.0  # pd-heartbeat-tick-interval: flow figures cover one interval


def gomap(d: dict[Any, Any]) -> dict[str, Any]:
    """Go's encoding/json writes map keys sorted as strings ("1", "10", "2")."""
    return {str(k): d[k] for k in sorted(d, key=str)}


# ------------------------------------------------------------------ stores


def _heartbeat_strings(s: Store) -> dict[str, Any]:
    """What a store's last heartbeat renders to; only a new heartbeat or a restart changes it."""
    key = (s.last_hb, s.start_ts, s.hb_capacity, s.hb_available, s.hb_used)
    if s.view_cache is not None and s.view_cache[0] == key:
        return s.view_cache[1]
    hb_ns, start_ns = to_ns(s.last_hb), to_ns(s.start_ts)
    strings: dict[str, Any] = {
        "start_timestamp": int(s.start_ts),
        "last_heartbeat": hb_ns,
        "capacity": bytes_size(s.hb_capacity),
        "available": bytes_size(s.hb_available),
        "used_size": bytes_size(s.hb_used),
        "start_ts": rfc3339nano(start_ns),
        "last_heartbeat_ts": rfc3339nano(hb_ns),
        "uptime": go_duration_ns(max(0, hb_ns - start_ns)),
    }
    s.view_cache = (key, strings)
    return strings


def store_info(c: Cluster, s: Store) -> dict[str, Any]:
    """One entry of GET /stores: {"store": metapb.Store (+state_name), "status": StoreStatus}."""
    hb = _heartbeat_strings(s)
    meta: dict[str, Any] = {"id": s.id, "address": s.address}
    if s.meta_state != UP:
        meta["state"] = s.meta_state
    meta["version"] = s.version
    meta["peer_address"] = s.peer_address
    meta["status_address"] = s.status_address
    meta["git_hash"] = s.git_hash
    meta["start_timestamp"] = hb["start_timestamp"]
    meta["deploy_path"] = s.deploy_path
    meta["last_heartbeat"] = hb["last_heartbeat"]
    if s.physically_destroyed:
        meta["physically_destroyed"] = True
    node_state = NODE_STATE[s.meta_state]
    if node_state != PREPARING:
        meta["node_state"] = node_state
    meta["state_name"] = c.state_name(s)

    status: dict[str, Any] = {
        "capacity": hb["capacity"],
        "available": hb["available"],
        "used_size": hb["used_size"],
        "leader_count": s.leader_count,
        "leader_weight": num(float(s.leader_weight)),
        "leader_score": num(float(c.leader_score(s))),
        "leader_size": s.leader_size,
        "region_count": s.region_count,
        "region_weight": num(float(s.region_weight)),
        "region_score": num(float(c.region_score(s))),
        "region_size": s.region_size,
    }
    if s.learner_count:
        status["learner_count"] = s.learner_count
    pending = c.pending_peer_count(s)
    if pending:
        status["pending_peer_count"] = pending
    if s.hb_slow_score:
        status["slow_score"] = s.hb_slow_score
    if s.meta_state != TOMBSTONE:
        status["slow_trend"] = {
            "cause_value": num(250000.0 + s.slow_latency_ms * 1000.0),
            "cause_rate": 0,
            "result_value": num(float(round(max(0.0, s.read_qps + s.write_qps)))),
            "result_rate": 0,
        }
    if s.snap_pending:
        status["receiving_snap_count"] = s.snap_pending
    status["start_ts"] = hb["start_ts"]
    status["last_heartbeat_ts"] = hb["last_heartbeat_ts"]
    status["uptime"] = hb["uptime"]
    return {"store": meta, "status": status}


# ------------------------------------------------------------------ regions


def _peer_json(p: Peer) -> str:
    if p.learner:
        return f'{{"role_name":"Learner","is_learner":true,"id":{p.id},"store_id":{p.store_id},"role":1}}'
    return f'{{"role_name":"Voter","id":{p.id},"store_id":{p.store_id}}}'


def _render_region(c: Cluster, r: Region) -> bytes:
    peers = ",".join(_peer_json(p) for p in r.peers)
    leader = _peer_json(r.leader) if r.leader is not None else '{"role_name":""}'
    down = c.down_peers(r)
    pending = c.pending_peers(r, down)
    parts = [
        f'{{"id":{r.id},"start_key":"{r.start.hex().upper()}","end_key":"{r.end.hex().upper()}",'
        f'"epoch":{{"conf_ver":{r.conf_ver},"version":{r.version}}},"peers":[{peers}],"leader":{leader}'
    ]
    if down:
        parts.append(
            ',"down_peers":['
            + ",".join(f'{{"peer":{_peer_json(p)},"down_seconds":{secs}}}' for p, secs in down)
            + "]"
        )
    if pending:
        parts.append(',"pending_peers":[' + ",".join(_peer_json(p) for p in pending) + "]")
    written = int(r.write_qps * REGION_HEARTBEAT * BYTES_PER_WRITE)
    read = int(r.read_qps * REGION_HEARTBEAT * BYTES_PER_READ)
    written_keys = int(r.write_qps * REGION_HEARTBEAT * KEYS_PER_WRITE)
    read_keys = int(r.read_qps * REGION_HEARTBEAT * KEYS_PER_READ)
    parts.append(
        f',"cpu_usage":0,"written_bytes":{written},"read_bytes":{read},"written_keys":{written_keys},'
        f'"read_keys":{read_keys},"approximate_size":{r.size},"approximate_keys":{r.keys},'
        f'"approximate_kv_size":{r.kv_size}}}'
    )
    return "".join(parts).encode()


def region_json(c: Cluster, r: Region) -> bytes:
    """Compact RegionInfo JSON; cached unless it depends on the time (down_seconds)."""
    cached = r.json
    if cached is not None:
        return cached
    body = _render_region(c, r)
    if not c.has_time_dependent_json(r):
        r.json = body
    return body


class RegionCacheWarmer:
    """Renders uncached region JSON a little at a time from the tick loop, so that a request for all
    regions finds them ready instead of serialising 100,000 regions on the spot."""

    def __init__(self) -> None:
        self._ids: list[int] = []
        self._pos = 0

    def step(self, c: Cluster, render_budget: int = 1000, scan_budget: int = 5000) -> int:
        rendered = 0
        for _ in range(scan_budget):
            if self._pos >= len(self._ids):
                self._ids = list(c.regions)
                self._pos = 0
                break  # at most one pass per step
            r = c.regions.get(self._ids[self._pos])
            self._pos += 1
            if r is not None and r.json is None:
                region_json(c, r)
                rendered += 1
                if rendered >= render_budget:
                    break
        return rendered


def regions_parts(c: Cluster, regions: list[Region]) -> list[bytes]:
    """The pieces of `{"count":N,"regions":[...]}`, ready to be written one after the other."""
    out = [b'{"count":%d,"regions":[' % len(regions)]
    first = True
    for r in regions:
        body = region_json(c, r)
        out.append(body if first else b"," + body)
        first = False
    out.append(b"]}")
    return out


# ------------------------------------------------------------------ operators


def operator_listing(c: Cluster, kinds: list[str] | None, as_object: bool) -> list[Any] | None:
    from subjects.tikv.sim.operators import ADMIN, LEADER, REGION

    bits = {"admin": ADMIN, "leader": LEADER, "region": REGION}
    ops: list[Operator] = [c.operators.running[rid] for rid in sorted(c.operators.running)]
    if kinds is not None:
        wanted = [k for k in kinds if k in bits]
        # PD builds the filtered list from nil: no match serialises as null
        selected = [op for op in ops if any(op.kind & bits[k] for k in wanted)]
        if not selected:
            return None
        ops = selected
    if as_object:
        return [op.as_object() for op in ops]
    return [op.describe(c.start) for op in ops]


def operator_status_text(c: Cluster, op: Operator) -> str:
    return f"status: {op.status}, operator: {op.describe(c.start)}"


# ------------------------------------------------------------------ cluster, members, stats


def member(c: Cluster, pd_url: str, full: bool) -> dict[str, Any]:
    m: dict[str, Any] = {
        "name": "pd-0",
        "member_id": c.member_id,
        "peer_urls": ["http://127.0.0.1:2380"],
        "client_urls": [pd_url],
    }
    if full:
        m["deploy_path"] = "/data/pd-0/bin"
        m["binary_version"] = "v" + PD_VERSION
        m["git_hash"] = PD_GIT_HASH
    return m


def members(c: Cluster, pd_url: str) -> dict[str, Any]:
    m = member(c, pd_url, True)
    return {"header": {"cluster_id": c.cluster_id}, "members": [m], "leader": m, "etcd_leader": m}


def health(c: Cluster, pd_url: str) -> list[dict[str, Any]]:
    return [{"name": "pd-0", "member_id": c.member_id, "client_urls": [pd_url], "health": True}]


def region_stats(c: Cluster, regions: list[Region] | None, count_only: bool) -> dict[str, Any]:
    """GET /stats/region over the given regions (None = all)."""
    rs = list(c.regions.values()) if regions is None else regions
    out: dict[str, Any] = {
        "count": len(rs),
        "empty_count": sum(1 for r in rs if r.size <= 1),
        "storage_size": sum(r.size for r in rs),
        "user_storage_size": sum(r.kv_size for r in rs),
        "storage_keys": sum(r.keys for r in rs),
    }
    if count_only:
        return {"count": len(rs)}
    if regions is None:
        live = [s for s in c.stores.values() if s.region_count]
        out["store_leader_count"] = gomap({s.id: s.leader_count for s in live if s.leader_count})
        out["store_peer_count"] = gomap({s.id: s.region_count for s in live})
        out["store_leader_size"] = gomap({s.id: s.leader_size for s in live if s.leader_count})
        out["store_leader_keys"] = gomap({s.id: s.leader_keys for s in live if s.leader_count})
        out["store_peer_size"] = gomap({s.id: s.region_size for s in live})
        out["store_peer_keys"] = gomap({s.id: s.region_keys for s in live})
        return out
    leader_count: dict[int, int] = {}
    peer_count: dict[int, int] = {}
    leader_size: dict[int, int] = {}
    leader_keys: dict[int, int] = {}
    peer_size: dict[int, int] = {}
    peer_keys: dict[int, int] = {}
    for r in rs:
        if r.leader is not None:
            sid = r.leader.store_id
            leader_count[sid] = leader_count.get(sid, 0) + 1
            leader_size[sid] = leader_size.get(sid, 0) + r.size
            leader_keys[sid] = leader_keys.get(sid, 0) + r.keys
        for p in r.peers:
            sid = p.store_id
            peer_count[sid] = peer_count.get(sid, 0) + 1
            peer_size[sid] = peer_size.get(sid, 0) + r.size
            peer_keys[sid] = peer_keys.get(sid, 0) + r.keys
    out["store_leader_count"] = gomap(leader_count)
    out["store_peer_count"] = gomap(peer_count)
    out["store_leader_size"] = gomap(leader_size)
    out["store_leader_keys"] = gomap(leader_keys)
    out["store_peer_size"] = gomap(peer_size)
    out["store_peer_keys"] = gomap(peer_keys)
    return out


# ------------------------------------------------------------------ hotspots


def _store_flow(s: Store, kind: str) -> tuple[float, float, float]:
    if kind == "read":
        q = max(0.0, s.read_qps)
        return q * BYTES_PER_READ, q * KEYS_PER_READ, q
    q = max(0.0, s.peer_write_qps)
    return q * BYTES_PER_WRITE, q * KEYS_PER_WRITE, q


def hot_regions(c: Cluster, kind: str, store_filter: set[int] | None) -> dict[str, Any]:
    """GET /hotspot/regions/{read|write}: hot peers grouped by store, as peer and as leader."""
    hot_ids = c.hot_read if kind == "read" else c.hot_write
    per_peer: dict[int, list[dict[str, Any]]] = {}
    per_leader: dict[int, list[dict[str, Any]]] = {}
    interval = 10.0 if kind == "read" else REGION_HEARTBEAT
    for rid in sorted(hot_ids):
        r = c.regions.get(rid)
        if r is None:
            continue
        qps = r.read_qps if kind == "read" else r.write_qps
        per_byte, per_key = (
            (BYTES_PER_READ, KEYS_PER_READ) if kind == "read" else (BYTES_PER_WRITE, KEYS_PER_WRITE)
        )
        since = r.hot_read_since if kind == "read" else r.hot_write_since
        degree = int((c.now - (since if since is not None else c.now)) // interval) + 1
        stores = [p.store_id for p in r.peers]
        for p in r.peers:
            is_leader = r.leader is p
            if kind == "read" and not is_leader:
                continue  # reads are served by the leader
            stat = {
                "store_id": p.store_id,
                "stores": stores,
                "is_leader": is_leader,
                "is_learner": p.learner,
                "region_id": r.id,
                "hot_degree": degree,
                "flow_bytes": num(qps * per_byte),
                "flow_keys": num(qps * per_key),
                "flow_query": num(qps),
                "anti_count": 2,
                "last_update_time": rfc3339nano(to_ns(float(int(c.now)))),
            }
            per_peer.setdefault(p.store_id, []).append(stat)
            if is_leader:
                per_leader.setdefault(p.store_id, []).append(stat)

    def group(stats_by_store: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
        out: dict[int, Any] = {}
        for s in c.stores.values():
            if s.meta_state == TOMBSTONE or (store_filter is not None and s.id not in store_filter):
                continue
            stats = stats_by_store.get(s.id, [])
            b, k, q = _store_flow(s, kind)
            out[s.id] = {
                "store_bytes": num(b),
                "store_keys": num(k),
                "store_query": num(q),
                "total_flow_bytes": num(sum(x["flow_bytes"] for x in stats)),
                "total_flow_keys": num(sum(x["flow_keys"] for x in stats)),
                "total_flow_query": num(sum(x["flow_query"] for x in stats)),
                "regions_count": len(stats),
                "statistics": stats,
            }
        return gomap(out)

    return {"as_peer": group(per_peer), "as_leader": group(per_leader)}


def hot_stores(c: Cluster) -> dict[str, Any]:
    maps: dict[str, dict[int, Any]] = {
        "bytes-write-rate": {},
        "bytes-read-rate": {},
        "keys-write-rate": {},
        "keys-read-rate": {},
        "query-write-rate": {},
        "query-read-rate": {},
    }
    for s in c.stores.values():
        if s.meta_state == TOMBSTONE:
            continue
        rb, rk, rq = _store_flow(s, "read")
        wb, wk, wq = _store_flow(s, "write")
        for key, value in (
            ("bytes-write-rate", wb),
            ("bytes-read-rate", rb),
            ("keys-write-rate", wk),
            ("keys-read-rate", rk),
            ("query-write-rate", wq),
            ("query-read-rate", rq),
        ):
            maps[key][s.id] = num(value)
    return {k: gomap(v) for k, v in maps.items() if v}


def store_progress(c: Cluster, s: Store) -> dict[str, Any] | None:
    """GET /stores/progress?id=N for a store being removed."""
    from subjects.tikv.sim.entities import OFFLINE

    if s.meta_state != OFFLINE:
        return None
    initial = max(1, s.removing_initial_size)
    moved = max(0, initial - s.region_size)
    elapsed = max(1e-9, c.now - s.removing_since)
    speed = moved / elapsed
    left = s.region_size / speed if speed > 0 else 1.7976931348623157e308
    return {
        "action": "removing",
        "store_id": s.id,
        "progress": num(min(1.0, moved / initial)),
        "current_speed": num(speed),
        "left_seconds": num(left),
    }
