"""HTTP handlers: PD's API under /pd/api/v1 and PD's /metrics (the PD port); the simulator's own
/sim/v1 (the admin listener); the host agent's /host/v1 (restart or stop a store's process).

Every handler first brings the model up to the current simulated time, so an answer always
reflects "now". Errors use PD's status codes and its two body shapes; an unexpected exception
becomes a 500 with a body and a log line, never a crash.
"""

from __future__ import annotations

import binascii
import logging
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from aiohttp import web

from subjects.tikv.sim import metrics_text, pd_views
from subjects.tikv.sim.entities import OFFLINE, TOMBSTONE, UP
from subjects.tikv.sim.errors import PDError, parse_uint_path, parse_uint_plain, store_not_found
from subjects.tikv.sim.faults import FaultError, NotFound
from subjects.tikv.sim.http_util import (
    BINARY_CT,
    pd_error,
    pd_json,
    read_json_object,
    read_sim_json,
    sim_error,
    sim_json,
)
from subjects.tikv.sim.operators import create_admin_operator
from subjects.tikv.sim.pd_config import ConfigError, PDConfig
from subjects.tikv.sim.schedulers import SCHEDULER_TYPES, EvictLeader, GrantLeader

if TYPE_CHECKING:
    from subjects.tikv.sim.model import Cluster
    from subjects.tikv.sim.server import SimServer

log = logging.getLogger(__name__)

P = "/pd/api/v1"
CHECK_KINDS = (
    "miss-peer",
    "extra-peer",
    "pending-peer",
    "down-peer",
    "learner-peer",
    "empty-region",
    "offline-peer",
    "oversized-region",
    "undersized-region",
)
STREAM_CHUNK = 2000  # regions per write when streaming a large region list
SCHEDULER_NOT_FOUND = "[PD:scheduler:ErrSchedulerNotFound]scheduler not found"
STORE_SCHEDULER = re.compile(r"^(evict-leader-scheduler|grant-leader-scheduler)-(\d+)$")
GARBAGE_JSON = b'{"count": 3, "stores": [{"store": {"id": 1, "address": "127.0.0.1:2016\x00\xff'
GARBAGE_METRICS = (
    b'pd_cluster_status{type="store_up_count" 3\n# TYPE pd_regions_status gauge gauge\n\xff\xfe{{{\n'
)


def _is_pd_route(path: str) -> bool:
    return path.startswith("/pd/") or path == "/metrics"


IS_PD = web.AppKey("is_pd", bool)  # PD's port answers in PD's shapes; the others in the simulator's


class Routes:
    """The route table and its handlers, bound to one running SimServer."""

    def __init__(self, server: SimServer) -> None:
        self.server = server

    @property
    def c(self) -> Cluster:
        return self.server.cluster

    # ------------------------------------------------------------------ app and middleware

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=16 * 1024 * 1024)
        app[IS_PD] = True
        r = app.router
        get, post, delete = r.add_get, r.add_post, r.add_delete
        # stores
        get(P + "/stores", self.get_stores, allow_head=False)
        get(P + "/stores/check", self.get_stores_check, allow_head=False)
        get(P + "/stores/progress", self.get_stores_progress, allow_head=False)
        delete(P + "/stores/remove-tombstone", self.remove_tombstone)
        get(P + "/stores/limit", self.get_stores_limit, allow_head=False)
        post(P + "/stores/limit", self.post_stores_limit)
        get(P + "/store/{id}", self.get_store, allow_head=False)
        delete(P + "/store/{id}", self.delete_store)
        post(P + "/store/{id}/state", self.post_store_state)
        post(P + "/store/{id}/weight", self.post_store_weight)
        post(P + "/store/{id}/limit", self.post_store_limit)
        # regions
        get(P + "/regions", self.get_regions, allow_head=False)
        get(P + "/regions/count", self.get_regions_count, allow_head=False)
        get(P + "/regions/key", self.get_regions_key, allow_head=False)
        get(P + "/regions/store/{id}", self.get_regions_store, allow_head=False)
        for kind in CHECK_KINDS:
            get(P + "/regions/check/" + kind, self._check_handler(kind), allow_head=False)
        get(P + "/region/id/{id}", self.get_region_id, allow_head=False)
        get(P + "/region/key/{key:.+}", self.get_region_key, allow_head=False)
        get(P + "/stats/region", self.get_stats_region, allow_head=False)
        # cluster and members
        get(P + "/cluster", self.get_cluster, allow_head=False)
        get(P + "/cluster/status", self.get_cluster_status, allow_head=False)
        get(P + "/health", self.get_health, allow_head=False)
        get("/pd/health", self.get_health, allow_head=False)
        get(P + "/members", self.get_members, allow_head=False)
        get(P + "/leader", self.get_leader, allow_head=False)
        get(P + "/ping", self.get_ping, allow_head=False)
        get("/pd/ping", self.get_ping, allow_head=False)
        get(P + "/version", self.get_version, allow_head=False)
        get(P + "/status", self.get_status, allow_head=False)
        # operators
        get(P + "/operators", self.get_operators, allow_head=False)
        post(P + "/operators", self.post_operators)
        delete(P + "/operators", self.delete_operators)
        get(P + "/operators/{region_id}", self.get_operator, allow_head=False)
        delete(P + "/operators/{region_id}", self.delete_operator)
        # schedulers
        get(P + "/schedulers", self.get_schedulers, allow_head=False)
        post(P + "/schedulers", self.post_schedulers)
        delete(P + "/schedulers/{name}", self.delete_scheduler)
        post(P + "/schedulers/{name}", self.pause_scheduler)
        get(P + "/scheduler-config/{name}/list", self.get_scheduler_config, allow_head=False)
        delete(P + "/scheduler-config/{name}/delete/{store_id}", self.delete_scheduler_config_store)
        # config
        get(P + "/config", self.get_config, allow_head=False)
        post(P + "/config", self.post_config)
        get(P + "/config/default", self.get_config_default, allow_head=False)
        get(P + "/config/schedule", self.get_config_schedule, allow_head=False)
        post(P + "/config/schedule", self.post_config_schedule)
        get(P + "/config/replicate", self.get_config_replicate, allow_head=False)
        post(P + "/config/replicate", self.post_config_replicate)
        # hotspots
        get(P + "/hotspot/regions/read", self.get_hot_read, allow_head=False)
        get(P + "/hotspot/regions/write", self.get_hot_write, allow_head=False)
        get(P + "/hotspot/stores", self.get_hot_stores, allow_head=False)
        # PD's metrics
        get("/metrics", self.get_pd_metrics, allow_head=False)
        return app

    def build_admin_app(self) -> web.Application:
        """The simulator's own API: faults, workload, info and host control, for a harness only."""
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        get, post, delete = r.add_get, r.add_post, r.add_delete
        get("/sim/v1/info", self.sim_info, allow_head=False)
        get("/sim/v1/workload/buckets", self.sim_workload_buckets, allow_head=False)
        get("/sim/v1/workload", self.sim_workload, allow_head=False)
        get("/sim/v1/faults", self.sim_faults, allow_head=False)
        post("/sim/v1/faults", self.sim_inject)
        get("/sim/v1/faults/{id}", self.sim_fault, allow_head=False)
        delete("/sim/v1/faults/{id}", self.sim_revert)
        get("/sim/v1/stores", self.sim_stores, allow_head=False)
        post("/sim/v1/stores/{id}/restart", self.sim_restart)
        post("/sim/v1/stores/{id}/stop", self.sim_stop)
        return app

    def build_host_app(self) -> web.Application:
        """The host agent: what a supervisor on each machine lets an operator do to a process."""
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/host/v1/stores", self.sim_stores, allow_head=False)
        r.add_post("/host/v1/stores/{id}/restart", self.sim_restart)
        r.add_post("/host/v1/stores/{id}/stop", self.sim_stop)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        is_pd = request.app.get(IS_PD, False)
        pd_route = is_pd and _is_pd_route(path)
        try:
            self.server.sync()
            if pd_route and self.server.faults.pd_down:
                # a dead PD: the connection closes without an answer
                if request.transport is not None:
                    request.transport.abort()
                raise web.HTTPServiceUnavailable()
            if pd_route and self.server.faults.pd_garbage:
                if path == "/metrics":
                    return web.Response(body=GARBAGE_METRICS, content_type="text/plain")
                return web.Response(
                    body=GARBAGE_JSON, headers={"Content-Type": "application/json; charset=UTF-8"}
                )
            return await handler(request)
        except PDError as e:
            return pd_error(e)
        except web.HTTPNotFound:
            if not is_pd:
                return sim_error(f"no such route: {request.method} {path}", 404)
            return web.Response(status=404, text="404 page not found\n", content_type="text/plain")
        except web.HTTPMethodNotAllowed:
            if not is_pd:
                return sim_error(f"method {request.method} not allowed on {path}", 405)
            return web.Response(status=405)
        except web.HTTPException:
            raise
        except Exception as e:
            log.exception("%s %s failed", request.method, path)
            if not is_pd:
                return sim_error(f"internal error: {type(e).__name__}: {e}", 500)
            return pd_json(f"internal error: {type(e).__name__}: {e}", 500)

    # ------------------------------------------------------------------ stores

    def _stores_payload(self, stores: list[Any]) -> dict[str, Any]:
        return {"count": len(stores), "stores": [pd_views.store_info(self.c, s) for s in stores]}

    async def get_stores(self, request: web.Request) -> web.Response:
        states = request.query.getall("state", [])
        accept = {UP, OFFLINE}
        if states:
            accept = set()
            for raw in states:
                try:
                    value = int(raw)
                except ValueError:
                    raise PDError(500, f'strconv.Atoi: parsing "{raw}": invalid syntax') from None
                if value not in (UP, OFFLINE, TOMBSTONE):
                    raise PDError(500, f"unknown StoreState: {value}")
                accept.add(value)
        stores = [s for s in self.c.stores.values() if s.meta_state in accept]
        return pd_json(self._stores_payload(stores))

    async def get_stores_check(self, request: web.Request) -> web.Response:
        names = {"up", "offline", "tombstone", "disconnected", "down"}
        wanted = []
        for raw in request.query.getall("state", []):
            if raw and raw.lower() not in names:
                raise PDError(400, "unknown StoreState: " + raw)
            if raw:
                wanted.append(raw.lower())
        stores = [s for s in self.c.stores.values() if not wanted or self.c.state_name(s).lower() in wanted]
        return pd_json(self._stores_payload(stores))

    def _store_id(self, request: web.Request) -> int:
        return parse_uint_path(request.match_info["id"])

    async def get_store(self, request: web.Request) -> web.Response:
        sid = self._store_id(request)
        return pd_json(pd_views.store_info(self.c, self.c.get_store(sid)))

    async def delete_store(self, request: web.Request) -> web.Response:
        sid = self._store_id(request)
        self.c.remove_store(sid, "force" in request.query)
        return pd_json("The store is set as Offline.")

    async def post_store_state(self, request: web.Request) -> web.Response:
        sid = self._store_id(request)
        state = request.query.get("state", "")
        if state.lower() == "up":
            self.c.up_store(sid)
        elif state.lower() == "offline":
            self.c.remove_store(sid, False)
        else:
            raise PDError(400, f"invalid state {state}")
        return pd_json("The store's state is updated.")

    async def post_store_weight(self, request: web.Request) -> web.Response:
        sid = self._store_id(request)
        body = await read_json_object(request)
        if "leader" not in body:
            raise PDError(400, "leader weight unset")
        if "region" not in body:
            raise PDError(400, "region weight unset")
        leader, region = body["leader"], body["region"]
        if isinstance(leader, bool) or not isinstance(leader, int | float) or leader < 0:
            raise PDError(400, "bad format leader weight")
        if isinstance(region, bool) or not isinstance(region, int | float) or region < 0:
            raise PDError(400, "bad format region weight")
        self.c.set_store_weight(sid, float(leader), float(region))
        return pd_json("The store's weight is updated.")

    def _limit_body(self, body: dict[str, Any]) -> tuple[float, list[str]]:
        if "rate" not in body:
            raise PDError(400, "rate unset")
        rate = body["rate"]
        if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
            raise PDError(400, "invalid rate which should be larger than 0")
        if "type" in body:
            typ = body["type"]
            if not isinstance(typ, str):
                raise PDError(400, "bad format type")
            if typ not in ("", "add-peer", "remove-peer"):
                raise PDError(400, "unknown type")
            return float(rate), [typ or "add-peer"]
        return float(rate), ["add-peer", "remove-peer"]

    async def post_store_limit(self, request: web.Request) -> web.Response:
        sid = self._store_id(request)
        self.c.get_store(sid, status=500)
        rate, types = self._limit_body(await read_json_object(request))
        limits = self.c.pd.sections["schedule"]["store-limit"].setdefault(
            str(sid), {"add-peer": 15, "remove-peer": 15}
        )
        for t in types:
            limits[t] = int(rate) if rate.is_integer() else rate
        return pd_json("The store's limit is updated.")

    async def post_stores_limit(self, request: web.Request) -> web.Response:
        rate, types = self._limit_body(await read_json_object(request))
        for sid in self.c.stores:
            limits = self.c.pd.sections["schedule"]["store-limit"].setdefault(
                str(sid), {"add-peer": 15, "remove-peer": 15}
            )
            for t in types:
                limits[t] = int(rate) if rate.is_integer() else rate
        return pd_json("Set store limit successfully.")

    async def get_stores_limit(self, request: web.Request) -> web.Response:
        limits = self.c.pd.sections["schedule"]["store-limit"]
        live = {
            k: v
            for k, v in limits.items()
            if int(k) in self.c.stores and self.c.stores[int(k)].meta_state != TOMBSTONE
        }
        return pd_json(pd_views.gomap(live))

    async def get_stores_progress(self, request: web.Request) -> web.Response:
        raw_id = request.query.get("id", "")
        if raw_id:
            if not (raw_id.isdigit() and raw_id.isascii()):
                raise PDError(
                    400,
                    {
                        "code": "input",
                        "msg": f'strconv.ParseUint: parsing "{raw_id}": invalid syntax',
                        "data": {"Func": "ParseUint", "Num": raw_id, "Err": {}},
                    },
                )
            sid = int(raw_id)
            s = self.c.stores.get(sid)
            progress = pd_views.store_progress(self.c, s) if s is not None else None
            if progress is None:
                raise PDError(
                    404, f"[PD:progress:ErrProgressNotFound]no progress found for the given store ID: {sid}"
                )
            return pd_json(progress)
        action = request.query.get("action", "")
        if action:
            items = [pd_views.store_progress(self.c, s) for s in self.c.stores.values()]
            items = [p for p in items if p is not None]
            if action != "removing" or not items:
                raise PDError(
                    404, f"[PD:progress:ErrProgressNotFound]no progress found for the action: {action}"
                )
            return pd_json(
                {
                    "action": action,
                    "progress": sum(p["progress"] for p in items) / len(items),
                    "current_speed": sum(p["current_speed"] for p in items),
                    "left_seconds": max(p["left_seconds"] for p in items),
                }
            )
        raise PDError(400, "need query parameters")

    async def remove_tombstone(self, request: web.Request) -> web.Response:
        self.c.remove_tombstones()
        return pd_json("Remove tombstone successfully.")

    # ------------------------------------------------------------------ regions

    async def _send_regions(self, request: web.Request, regions: list[Any]) -> web.StreamResponse:
        parts = pd_views.regions_parts(self.c, regions)
        if len(parts) <= STREAM_CHUNK:
            return web.Response(body=b"".join(parts), headers={"Content-Type": BINARY_CT})
        resp = web.StreamResponse(headers={"Content-Type": BINARY_CT})
        resp.content_length = sum(len(p) for p in parts)
        await resp.prepare(request)
        for i in range(0, len(parts), STREAM_CHUNK):
            await resp.write(b"".join(parts[i : i + STREAM_CHUNK]))
        await resp.write_eof()
        return resp

    async def get_regions(self, request: web.Request) -> web.StreamResponse:
        return await self._send_regions(request, list(self.c.regions_in_key_order()))

    async def get_regions_count(self, request: web.Request) -> web.Response:
        return pd_json({"count": len(self.c.regions), "regions": None})

    def _hex_or_raw(self, request: web.Request, values: list[str]) -> list[bytes]:
        raw = [v.encode("utf-8", "surrogateescape") for v in values]
        if request.query.get("format") == "hex":
            out = []
            for v in raw:
                try:
                    out.append(binascii.unhexlify(v))
                except (binascii.Error, ValueError):
                    if len(v) % 2:
                        raise PDError(400, "encoding/hex: odd length hex string") from None
                    bad = next((chr(b) for b in v if chr(b) not in "0123456789abcdefABCDEF"), "?")
                    raise PDError(400, f"encoding/hex: invalid byte: U+{ord(bad):04X} {bad!r}") from None
            return out
        return raw

    async def get_regions_key(self, request: web.Request) -> web.StreamResponse:
        start, end = self._hex_or_raw(
            request, [request.query.get("key", ""), request.query.get("end_key", "")]
        )
        limit_raw = request.query.get("limit", "16")
        try:
            limit = int(limit_raw)
        except ValueError:
            raise PDError(400, f'strconv.Atoi: parsing "{limit_raw}": invalid syntax') from None
        limit = min(limit, 10240)
        regions = self.c.regions_in_range(start, end)
        if limit > 0:
            regions = regions[:limit]
        return await self._send_regions(request, regions)

    async def get_regions_store(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["id"]
        try:
            sid = int(raw)
        except ValueError:
            raise PDError(400, f'strconv.Atoi: parsing "{raw}": invalid syntax') from None
        s = self.c.stores.get(sid)
        ids = sorted(s.peer_regions) if s is not None else []
        return await self._send_regions(request, [self.c.regions[rid] for rid in ids])

    def _check_handler(self, kind: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            ids = self.c.check_region_ids(kind) or []
            return await self._send_regions(request, [self.c.regions[rid] for rid in ids])

        return handler

    async def get_region_id(self, request: web.Request) -> web.Response:
        rid = parse_uint_plain(request.match_info["id"])
        if rid == 0:
            raise PDError(
                400,
                {
                    "class": 0,
                    "code": 0,
                    "message": "invalid region id",
                    "rfccode": "PD:region:ErrRegionInvalidID",
                },
            )
        r = self.c.regions.get(rid)
        if r is None:
            raise PDError(404, f"[PD:region:ErrRegionNotFound]region {rid} not found")
        return web.Response(body=pd_views.region_json(self.c, r), headers={"Content-Type": BINARY_CT})

    async def get_region_key(self, request: web.Request) -> web.Response:
        raw_path = request.raw_path.split("?", 1)[0]
        prefix = P + "/region/key/"
        segment = raw_path[len(prefix) :] if raw_path.startswith(prefix) else request.match_info["key"]
        key = unquote_to_bytes(segment.replace("+", " "))
        if request.query.get("format") == "hex":
            key = self._hex_or_raw(request, [key.decode("utf-8", "surrogateescape")])[0]
        r = self.c.region_by_key(key)
        if r is None:
            raise PDError(404, "[PD:region:ErrRegionNotFound]region %v not found")
        return web.Response(body=pd_views.region_json(self.c, r), headers={"Content-Type": BINARY_CT})

    async def get_stats_region(self, request: web.Request) -> web.Response:
        start = request.query.get("start_key", "").encode("utf-8", "surrogateescape")
        end = request.query.get("end_key", "").encode("utf-8", "surrogateescape")
        whole = not start and not end
        regions = None if whole else self.c.regions_in_range(start, end)
        if "count" in request.query:
            n = len(self.c.regions) if regions is None else len(regions)
            return pd_json(
                {
                    "count": n,
                    "empty_count": 0,
                    "storage_size": 0,
                    "user_storage_size": 0,
                    "storage_keys": 0,
                    "store_leader_count": None,
                    "store_peer_count": None,
                    "store_leader_size": None,
                    "store_leader_keys": None,
                    "store_peer_size": None,
                    "store_peer_keys": None,
                }
            )
        return pd_json(pd_views.region_stats(self.c, regions, False))

    # ------------------------------------------------------------------ cluster and members

    async def get_cluster(self, request: web.Request) -> web.Response:
        return pd_json({"id": self.c.cluster_id, "max_peer_count": self.c.pd.max_replicas})

    async def get_cluster_status(self, request: web.Request) -> web.Response:
        from subjects.tikv.sim.goformat import rfc3339nano, to_ns

        return pd_json(
            {
                "raft_bootstrap_time": rfc3339nano(to_ns(self.c.start - 86400.0)),
                "is_initialized": True,
                "replication_status": "",
            }
        )

    async def get_health(self, request: web.Request) -> web.Response:
        return pd_json(pd_views.health(self.c, self.server.pd_url))

    async def get_members(self, request: web.Request) -> web.Response:
        return pd_json(pd_views.members(self.c, self.server.pd_url))

    async def get_leader(self, request: web.Request) -> web.Response:
        return pd_json(pd_views.member(self.c, self.server.pd_url, False))

    async def get_ping(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def get_version(self, request: web.Request) -> web.Response:
        return pd_json({"version": "v" + pd_views.PD_VERSION})

    async def get_status(self, request: web.Request) -> web.Response:
        return pd_json(
            {
                "build_ts": "2024-12-18 07:55:50",
                "version": "v" + pd_views.PD_VERSION,
                "git_hash": pd_views.PD_GIT_HASH,
                "start_timestamp": int(self.c.start),
                "kv_mode": "",
            }
        )

    # ------------------------------------------------------------------ operators

    async def get_operators(self, request: web.Request) -> web.Response:
        kinds = request.query.getall("kind", []) if "kind" in request.query else None
        listing = pd_views.operator_listing(self.c, kinds, "object" in request.query)
        return pd_json(listing)

    async def post_operators(self, request: web.Request) -> web.Response:
        body = await read_json_object(request)
        create_admin_operator(self.c, body)
        return pd_json("The operator is created.")

    async def delete_operators(self, request: web.Request) -> web.Response:
        self.c.operators.cancel_all()
        return pd_json("All pending operators are canceled.")

    async def get_operator(self, request: web.Request) -> web.Response:
        rid = parse_uint_plain(request.match_info["region_id"])
        op = self.c.operators.get_status(rid)
        if op is None:
            raise PDError(500, "[PD:operator:ErrOperatorNotFound]operator not found")
        return pd_json(pd_views.operator_status_text(self.c, op))

    async def delete_operator(self, request: web.Request) -> web.Response:
        rid = parse_uint_plain(request.match_info["region_id"])
        if not self.c.operators.cancel(rid):
            raise PDError(500, "[PD:operator:ErrOperatorNotFound]operator not found")
        return pd_json("The pending operator is canceled.")

    # ------------------------------------------------------------------ schedulers

    async def get_schedulers(self, request: web.Request) -> web.Response:
        status = request.query.get("status", "")
        names = list(self.c.schedulers.active)
        if status == "paused":
            names = [n for n, s in self.c.schedulers.active.items() if self.c.now < s.paused_until]
        elif status == "disabled":
            names = []
        return pd_json(names)

    async def post_schedulers(self, request: web.Request) -> web.Response:
        body = await read_json_object(request)
        name = body.get("name")
        if not isinstance(name, str):
            raise PDError(400, "missing scheduler name")
        active = self.c.schedulers.active
        if name in (EvictLeader.name, GrantLeader.name):
            if "store_id" not in body:
                raise PDError(400, "missing store id")
            raw = body["store_id"]
            if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
                raise PDError(400, "please input a right store id")
            sid = int(raw)
            store = self.c.stores.get(sid)
            if store is None:
                raise PDError(400, store_not_found(sid).body)
            sched = active.get(name)
            if sched is None:
                sched = SCHEDULER_TYPES[name]()
                assert isinstance(sched, EvictLeader | GrantLeader)
                sched.stores[sid] = None
                active[name] = sched
                return pd_json("The scheduler is created.")
            assert isinstance(sched, EvictLeader | GrantLeader)
            sched.stores[sid] = None
            return pd_json("The scheduler has been applied to the store.")
        if name not in SCHEDULER_TYPES:
            raise PDError(400, "unknown scheduler")
        if name in active:
            raise PDError(400, "[PD:scheduler:ErrSchedulerExisted]scheduler existed")
        active[name] = SCHEDULER_TYPES[name]()
        return pd_json("The scheduler is created.")

    def _remove_store_from(self, sched_name: str, sid: int) -> tuple[int, Any]:
        """scheduler-config/<name>/delete/<store>: (status, body)."""
        sched = self.c.schedulers.active.get(sched_name)
        if not isinstance(sched, EvictLeader | GrantLeader):
            return 404, SCHEDULER_NOT_FOUND
        if sid not in sched.stores:
            return 404, "[PD:scheduler:ErrScheduleConfigNotExist]the config does not exist"
        del sched.stores[sid]
        if not sched.stores:
            del self.c.schedulers.active[sched_name]
            return 200, "The last store has been deleted"
        return 200, None

    async def delete_scheduler(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        active = self.c.schedulers.active
        if name in active:
            del active[name]
            return pd_json("The scheduler is removed.")
        m = STORE_SCHEDULER.match(name)
        if m:
            # PD redirects to the scheduler-config delete and passes only its status code on
            status, _ = self._remove_store_from(m.group(1), int(m.group(2)))
            return pd_json(None, status)
        raise PDError(404, SCHEDULER_NOT_FOUND)

    async def pause_scheduler(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await read_json_object(request)
        if "delay" not in body:
            raise PDError(400, "missing pause time")
        delay = body["delay"]
        if isinstance(delay, bool) or not isinstance(delay, int | float):
            raise PDError(400, "please input a right delay time")
        sched = self.c.schedulers.active.get(name)
        if sched is None:
            raise PDError(500, SCHEDULER_NOT_FOUND)
        sched.paused_until = self.c.now + float(delay) if delay > 0 else 0.0
        return pd_json("Pause or resume the scheduler successfully.")

    async def get_scheduler_config(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        sched = self.c.schedulers.active.get(name)
        if sched is None:
            raise PDError(404, SCHEDULER_NOT_FOUND)
        config = sched.config()
        if config is None:
            config = {"batch": 4, "ranges": [{"start-key": "", "end-key": ""}]}
        return pd_json(config)

    async def delete_scheduler_config_store(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        raw = request.match_info["store_id"]
        try:
            sid = parse_uint_plain(raw)
        except PDError:
            raise PDError(400, f'strconv.ParseUint: parsing "{raw}": invalid syntax') from None
        if name not in (EvictLeader.name, GrantLeader.name):
            raise PDError(404, SCHEDULER_NOT_FOUND)
        status, body = self._remove_store_from(name, sid)
        return pd_json(body, status)

    # ------------------------------------------------------------------ config

    async def get_config(self, request: web.Request) -> web.Response:
        return pd_json(self._config_doc(self.c.pd))

    def _config_doc(self, cfg: PDConfig) -> dict[str, Any]:
        doc = cfg.document("8.5.0")
        doc["schedule"]["store-limit"] = pd_views.gomap(doc["schedule"]["store-limit"])
        return doc

    async def get_config_default(self, request: web.Request) -> web.Response:
        fresh = PDConfig(max_store_down_time="30m0s", max_replicas=3, store_ids=[], pd_url=self.server.pd_url)
        return pd_json(self._config_doc(fresh))

    async def _update_config(self, request: web.Request, section: str | None) -> web.Response:
        body = await read_json_object(request)
        try:
            changed = self.c.pd.update(body, section)
        except ConfigError as e:
            raise PDError(400, str(e)) from None
        self.c.apply_config_change(changed)
        return pd_json("The config is updated.")

    async def post_config(self, request: web.Request) -> web.Response:
        return await self._update_config(request, None)

    async def get_config_schedule(self, request: web.Request) -> web.Response:
        return pd_json(self._config_doc(self.c.pd)["schedule"])

    async def post_config_schedule(self, request: web.Request) -> web.Response:
        return await self._update_config(request, "schedule")

    async def get_config_replicate(self, request: web.Request) -> web.Response:
        return pd_json(dict(self.c.pd.sections["replication"]))

    async def post_config_replicate(self, request: web.Request) -> web.Response:
        return await self._update_config(request, "replication")

    # ------------------------------------------------------------------ hotspots

    def _hot_filter(self, request: web.Request) -> set[int] | None:
        raw = request.query.getall("store_id", [])
        if not raw:
            return None
        out = set()
        for v in raw:
            if not (v.isdigit() and v.isascii()):
                raise PDError(400, f"invalid store id: {v}")
            out.add(int(v))
        return out

    async def get_hot_read(self, request: web.Request) -> web.Response:
        return pd_json(pd_views.hot_regions(self.c, "read", self._hot_filter(request)))

    async def get_hot_write(self, request: web.Request) -> web.Response:
        return pd_json(pd_views.hot_regions(self.c, "write", self._hot_filter(request)))

    async def get_hot_stores(self, request: web.Request) -> web.Response:
        return pd_json(pd_views.hot_stores(self.c))

    # ------------------------------------------------------------------ PD metrics

    async def get_pd_metrics(self, request: web.Request) -> web.Response:
        body = metrics_text.pd_metrics(self.c, self.server.config.pd_metrics_style)
        return web.Response(body=body, headers={"Content-Type": metrics_text.CONTENT_TYPE})

    # ------------------------------------------------------------------ /sim/v1

    async def sim_info(self, request: web.Request) -> web.Response:
        return sim_json(
            {
                "time_scale": self.server.clock.time_scale,
                "sim_now": self.c.now,
                "wall_now": time.time(),
                "stores": len(self.c.stores),
                "regions": len(self.c.regions),
                "seed": self.server.config.seed,
            }
        )

    async def sim_workload(self, request: web.Request) -> web.Response:
        return sim_json(self.server.workload_view())

    async def sim_workload_buckets(self, request: web.Request) -> web.Response:
        raw = request.query.get("after")
        try:
            after = float(raw) if raw is not None else None
        except ValueError:
            return sim_error(f"after must be a number (Unix seconds), got {raw!r}")
        return sim_json(self.server.workload_buckets(after))

    async def sim_faults(self, request: web.Request) -> web.Response:
        return sim_json(self.server.faults.listing())

    async def sim_inject(self, request: web.Request) -> web.Response:
        body, err = await read_sim_json(request)
        if err is not None:
            return sim_error(err)
        try:
            return sim_json(self.server.faults.inject(body))
        except FaultError as e:
            return sim_error(str(e))

    async def sim_fault(self, request: web.Request) -> web.Response:
        fid = request.match_info["id"]
        fault = self.server.faults.faults.get(fid)
        if fault is None:
            return sim_error(f"fault {fid} not found", 404)
        return sim_json(fault.as_dict())

    async def sim_revert(self, request: web.Request) -> web.Response:
        fid = request.match_info["id"]
        try:
            return sim_json(self.server.faults.revert(fid))
        except NotFound:
            return sim_error(f"fault {fid} not found", 404)

    async def sim_stores(self, request: web.Request) -> web.Response:
        return sim_json(self.server.faults.host_listing())

    def _sim_store_id(self, request: web.Request) -> int | None:
        raw = request.match_info["id"]
        return int(raw) if raw.isdigit() and raw.isascii() else None

    async def sim_restart(self, request: web.Request) -> web.Response:
        sid = self._sim_store_id(request)
        if sid is None or sid not in self.c.stores:
            return sim_error(f"store {request.match_info['id']} not found", 404)
        return sim_json(self.server.faults.host_restart(sid))

    async def sim_stop(self, request: web.Request) -> web.Response:
        sid = self._sim_store_id(request)
        if sid is None or sid not in self.c.stores:
            return sim_error(f"store {request.match_info['id']} not found", 404)
        return sim_json(self.server.faults.host_stop(sid))
