"""The rate limiter lab as containers on a Docker engine (`operator-tui lab up ratelimiter --docker`).

The same layout as the process lab (`subjects.ratelimiter.lab`), the same addresses
(`subjects.ratelimiter.addresses`), the same state file (with ``runtime: docker`` and a container
record per part), so the subject, the faults and the actions read it exactly as they read the
process lab. Every container uses the host network and listens on an address of its own on
loopback (traffic never leaves 127.0.0.0/8; no bridge, no private addresses), and connects from
it, so a partition can match one node's traffic by its source address (containers have no cgroup
v2 path on this engine). The address block is ``--addresses`` or, by default, 127.18.0::

    redis-server     127.18.0.1:REDIS          image operator-tui/redis, data on a tmpfs (32 MiB, or
                                                --redis-disk-mb), saved every second
    proxy            127.18.0.2:BASE+100 (control), node i's link on 127.18.0.(100+i):BASE+100+i
    node i ("n<i>")  127.18.0.(10+i):BASE+i    image operator-tui/ratelimiter
    load generator   from 127.18.0.3, no port

Labels name the lab folder, the subject and the node, so `docker ps --filter
label=org.operator-tui.lab-dir=DIR` lists a lab's containers; `down` removes them all and checks
that the engine lists none. The engine: DOCKER_HOST, else the project's local engine
(`scripts/dockerd.sh`), started by `up` when it does not run and then stopped again by `down`.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import Any

from containers import engine, images
from containers import nodes as ctr
from containers.nodes import ContainerRecord
from subjects import processes
from subjects.ratelimiter.addresses import AddressError, AddressPlan
from subjects.ratelimiter.lab import (
    DEFAULT_BASE_PORT,
    DEFAULT_REDIS_PORT,
    DEFAULT_SAVE_S,
    LOADGEN_PROCESS,
    LOADGEN_STATUS,
    PROXY_PROCESS,
    REDIS_PROCESS,
    START_TIMEOUT_S,
    SUBJECT,
    LabError,
    LabState,
    NodeOptions,
    NodeSpec,
    RateLimiterLab,
    RedisDisk,
    plan_ports,
    redis_save_args,
    wait_answering,
)

DEFAULT_BLOCK = "127.18.0"  # one address per part even without --addresses: partitions match by source
REDIS_DATA = "/data"
DEFAULT_DISK_MB = 32
STATUS_DIR = "/status"  # the load generator's status file, bound from the lab folder
IMAGE_NAMES = ("redis", "ratelimiter")
STOP_GRACE_S = 5
# The container states as the faults and actions name process states.
STATES = {ctr.RUNNING: processes.RUNNING, ctr.PAUSED: processes.PAUSED,
          ctr.EXITED: processes.STOPPED, ctr.MISSING: processes.STOPPED}


class DockerRateLimiterLab(RateLimiterLab):
    # -- the engine ----------------------------------------------------------------------------

    def _client(self, state: LabState | None = None) -> Any:
        state = state or self.state
        try:
            return engine.connect(state.docker_host)
        except engine.EngineError as e:
            raise LabError(str(e)) from e

    def _container(self, state: LabState, name: str) -> ContainerRecord:
        if name not in state.containers:
            raise LabError(f"no container {name!r} in this lab; containers: {', '.join(state.containers)}")
        return state.containers[name]

    def is_up(self) -> bool:
        state = self._read()
        if state is None:
            return False
        try:
            client = engine.connect(state.docker_host, timeout_s=10)
        except engine.EngineError:
            return False
        try:
            return any(ctr.state(client, c.id) in (ctr.RUNNING, ctr.PAUSED) for c in state.containers.values())
        finally:
            client.close()

    # -- up ------------------------------------------------------------------------------------

    def up(self, nodes: int = 3, redis_port: int | None = None, base_port: int | None = None, load: bool = True,
           node_options: NodeOptions | None = None, load_args: list[str] | None = None, block: str | None = None,
           redis_disk_mb: int | None = None, redis_save_s: int = DEFAULT_SAVE_S) -> LabState:
        """Start every container and return once every node answers /health with 200. `block` and
        `redis_disk_mb` as in the process lab (here: the Redis container's tmpfs, 32 MiB by default)."""
        redis_port = DEFAULT_REDIS_PORT if redis_port is None else redis_port
        base_port = DEFAULT_BASE_PORT if base_port is None else base_port
        ports = plan_ports(nodes, redis_port, base_port)
        try:
            plan = AddressPlan(block or DEFAULT_BLOCK)
        except AddressError as e:
            raise LabError(str(e)) from e
        disk_mb = DEFAULT_DISK_MB if redis_disk_mb is None else redis_disk_mb
        if not 1 <= disk_mb <= 4096:
            raise LabError(f"--redis-disk-mb must be between 1 and 4096, got {disk_mb}")
        with self._locked(create=True):
            old = self._read()
            if old is not None:
                if type(self).is_up(self) or (old.runtime == "process" and RateLimiterLab.is_up(self)):
                    raise LabError(f"a {SUBJECT} lab is already up in {self.run_dir}; stop it with "
                                   f"`operator-tui lab down {SUBJECT}`")
                self._remove_transient()
            state = LabState(
                run_dir=str(self.run_dir), started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                redis_port=redis_port, redis_url=f"redis://{plan.redis}:{redis_port}/0",
                proxy_control_port=ports["proxy control"], proxy_url=f"http://{plan.proxy}:{ports['proxy control']}",
                nodes=[NodeSpec(id=f"n{i}", port=ports[f"n{i}"], url=f"http://{plan.node(i)}:{ports[f'n{i}']}",
                                link_port=ports[f"link n{i}"], redis_url=f"redis://{plan.link(i)}:{ports[f'link n{i}']}/0",
                                host=plan.node(i), link_host=plan.link(i))
                       for i in range(1, nodes + 1)],
                node_options=node_options or NodeOptions(), load=load, block=plan.block, redis_host=plan.redis,
                proxy_host=plan.proxy, redis_disk=RedisDisk(path=REDIS_DATA, size_mb=disk_mb, save_s=redis_save_s),
                runtime="docker", load_args=load_args or [],
            )
            taken = [f"{host}:{port} ({what})" for what, (host, port) in state.endpoints().items()
                     if not processes.port_free(port, host)]
            if taken:
                raise LabError(f"port{'s' if len(taken) > 1 else ''} already in use: {', '.join(taken)}; "
                               "choose others with --redis-port / --base-port")
            try:
                address, started = engine.ensure()
            except engine.EngineError as e:
                raise LabError(str(e)) from e
            state.docker_host, state.engine_started = address, started
            self._write(state)
            client = self._client(state)
            try:
                self._check_images(client)
                ctr.remove_lab(client, self.run_dir)  # left by a crashed `up` here, they would hold the names
                self._start_all(state, client)
            except BaseException as e:
                self._teardown(state, client)
                if isinstance(e, LabError | KeyboardInterrupt):
                    raise
                raise LabError(f"lab failed to start: {type(e).__name__}: {e}") from e
            finally:
                client.close()
            return state

    def _check_images(self, client: Any) -> None:
        """Build the images the lab runs when they are missing or older than this checkout (the
        ratelimiter image holds the project's code), saying so on stderr."""
        stale = images.stale(client, list(IMAGE_NAMES))
        if not stale:
            return
        print(f"building {', '.join(images.IMAGES[n].tag for n in stale)} (missing, or older than this checkout)",
              file=sys.stderr, flush=True)
        try:
            images.build(client, stale, progress=lambda line: print(line, file=sys.stderr, flush=True))
        except images.BuildError as e:
            raise LabError(f"could not build the lab's images: {e}") from e

    def _run(self, state: LabState, client: Any, name: str, image: str, command: list[str], address: str,
             port: int | None, **kwargs: Any) -> ContainerRecord:
        cname = ctr.container_name(self.run_dir, SUBJECT, name)
        c = ctr.run(client, image=image, name=cname, command=command,
                      labels=ctr.labels(self.run_dir, SUBJECT, name), **kwargs)
        rec = ContainerRecord(name=name, id=c.id, container_name=cname, image=image, address=address, port=port)
        state.containers[name] = rec
        self._write(state)
        return rec

    def _start_all(self, state: LabState, client: Any) -> None:
        tag = images.IMAGES
        disk = state.redis_disk
        assert disk is not None
        # Save points, so that a full data disk makes Redis refuse writes (redis_disk_full) as it
        # would in production; the data is tiny and the disk a tmpfs.
        self._run(state, client, REDIS_PROCESS, tag["redis"].tag,
                  ["redis-server", "--bind", state.redis_host, "--port", str(state.redis_port), "--appendonly", "no",
                   "--dir", REDIS_DATA, "--protected-mode", "no", *redis_save_args(disk)],
                  state.redis_host, state.redis_port, tmpfs={REDIS_DATA: f"size={disk.size_mb}m"})
        self._wait_redis_up(state, client)
        proxy = ["python", "-m", "subjects.ratelimiter.proxy", "--bind", state.proxy_host, "--source-address",
                 state.proxy_host, "--control-port", str(state.proxy_control_port),
                 "--upstream", f"{state.redis_host}:{state.redis_port}"]
        for spec in state.nodes:
            proxy += ["--link", f"{spec.id}={spec.link_host}:{spec.link_port}"]
        rec = self._run(state, client, PROXY_PROCESS, tag["ratelimiter"].tag, proxy, state.proxy_host,
                        state.proxy_control_port)
        self._wait_http(client, rec, f"{state.proxy_url}/links")
        for spec in state.nodes:
            self._run(state, client, spec.id, tag["ratelimiter"].tag, self._node_command(state, spec),
                      spec.host, spec.port)
        deadline = time.monotonic() + START_TIMEOUT_S
        for spec in state.nodes:
            self._wait_http(client, state.containers[spec.id], f"{spec.url}/health", deadline)
        if state.load:
            self._run_load(state, client)

    def _run_load(self, state: LabState, client: Any) -> None:
        # The status file lands in the lab folder (bound into the container), as the process lab's does.
        argv = ["python", "-m", "subjects.ratelimiter.loadgen", "--status-file", f"{STATUS_DIR}/{LOADGEN_STATUS}",
                "--source-address", state.plan.loadgen]
        for spec in state.nodes:
            argv += ["--seed-url", spec.url]
        rec = self._run(state, client, LOADGEN_PROCESS, images.IMAGES["ratelimiter"].tag, argv + state.load_args,
                        state.plan.loadgen, None, volumes={str(self.run_dir): {"bind": STATUS_DIR, "mode": "rw"}})
        time.sleep(0.3)
        self._must_run(client, rec)

    def _node_command(self, state: LabState, spec: NodeSpec) -> list[str]:
        o = state.node_options
        return ["python", "-m", "subjects.ratelimiter.service", "--node-id", spec.id, "--host", spec.host,
                "--port", str(spec.port), "--redis", spec.redis_url, "--source-address", spec.host,
                "--fail-mode", o.fail_mode, "--local-cache-ms", str(o.local_cache_ms),
                "--default-limit", str(o.default_limit), "--default-window-ms", str(o.default_window_ms),
                "--heartbeat-ms", str(o.heartbeat_ms), "--node-ttl-ms", str(o.node_ttl_ms),
                "--redis-timeout-ms", str(o.redis_timeout_ms)]

    def _wait_redis_up(self, state: LabState, client: Any) -> None:
        import redis

        rec = state.containers[REDIS_PROCESS]
        r = redis.Redis(host=state.redis_host, port=state.redis_port, socket_timeout=1.0, socket_connect_timeout=1.0)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                try:
                    r.ping()
                    return
                except redis.RedisError as e:
                    self._must_run(client, rec)
                    if time.monotonic() > deadline:
                        raise LabError(f"redis did not answer PING within {START_TIMEOUT_S:.0f}s: {e}") from e
                    time.sleep(0.1)
        finally:
            r.close()

    def _must_run(self, client: Any, rec: ContainerRecord) -> None:
        if ctr.state(client, rec.id) != ctr.RUNNING:
            tail = client.containers.get(rec.id).logs(tail=5).decode("utf-8", "replace").strip().replace("\n", " | ")
            raise LabError(f"container {rec.name} exited: {tail}")

    def _wait_http(self, client: Any, rec: ContainerRecord, url: str, deadline: float | None = None) -> None:
        wait_answering(url, deadline or time.monotonic() + START_TIMEOUT_S, lambda: self._must_run(client, rec),
                       rec.name)

    # -- down ----------------------------------------------------------------------------------

    def _teardown(self, state: LabState, client: Any) -> list[dict[str, str]]:
        removed = ctr.remove_lab(client, self.run_dir, self.logs_dir)
        left = [c.name for c in ctr.of_lab(client, self.run_dir)]
        if left:
            raise LabError(f"containers left after removal: {', '.join(left)}")
        return removed

    def down(self) -> dict:
        """Remove every container of the lab (its log saved first), check that the engine lists none
        with the lab's label, stop the local engine if `up` started it. LabError if anything is left."""
        with self._locked():
            state = self.state
            client = self._client(state)
            try:
                removed = self._teardown(state, client)
                others = client.containers.list(all=True)
            finally:
                client.close()
            stopped_engine = None
            if state.engine_started and not others and engine.is_local(state.docker_host or ""):
                try:
                    stopped_engine = engine.stop_local()
                except engine.EngineError as e:
                    raise LabError(f"containers removed, but the local engine did not stop: {e}") from e
            endpoints = state.endpoints()
            deadline = time.monotonic() + STOP_GRACE_S
            while (left := {w: hp for w, hp in endpoints.items() if processes.is_listening(*hp)}) and \
                    time.monotonic() < deadline:
                time.sleep(0.1)
            if left:
                raise LabError("lab down left ports listening: " + ", ".join(f"{h}:{p} ({w})"
                                                                            for w, (h, p) in left.items()))
            return {
                "run_dir": str(self.run_dir), "runtime": "docker", "docker_host": state.docker_host,
                "removed_containers": removed, "engine": stopped_engine, "containers_left": 0,
                "ports_checked": sorted(p for _, p in endpoints.values()), "ports_still_listening": [],
                "unmounted": None, "cgroups_removed": None,
                "removed": self._remove_transient(), "logs": str(self.logs_dir),
                "stopped": [{"name": r["name"], "pid": r["id"], "outcome": f"container {r['outcome']}"}
                            for r in removed],
            }

    # -- status --------------------------------------------------------------------------------

    def start_load(self) -> str:
        """Start the load generator of a lab brought up without it, in a container of its own as
        `up` starts it: ``started`` or ``already running``."""
        with self._locked():
            state = self.state
            client = self._client(state)
            try:
                rec = state.containers.get(LOADGEN_PROCESS)
                if rec is not None and ctr.state(client, rec.id) in (ctr.RUNNING, ctr.PAUSED):
                    return "already running"
                if rec is not None:  # one that exited holds the container's name
                    ctr.remove(client, rec.id, self.logs_dir / f"{LOADGEN_PROCESS}.log")
                state.load = True
                self._run_load(state, client)
                return "started"
            finally:
                client.close()

    def stop_load(self) -> str:
        """Stop and remove the load generator's container (its log kept in the lab's logs); the rest
        of the lab keeps running."""
        with self._locked():
            state = self.state
            rec = state.containers.pop(LOADGEN_PROCESS, None)
            outcome = "not running"
            if rec is not None:
                client = self._client(state)
                try:
                    outcome = ctr.stop(client, rec.id, STOP_GRACE_S)
                    ctr.remove(client, rec.id, self.logs_dir / f"{LOADGEN_PROCESS}.log")
                except ctr.ContainerError as e:
                    raise LabError(f"{LOADGEN_PROCESS}: {e}") from e
                finally:
                    client.close()
            state.load = False
            self._write(state)
            return outcome

    def status(self) -> dict:
        state = self.state
        client = self._client(state)
        try:
            containers = {name: ctr.info(client, rec.id) for name, rec in state.containers.items()}
        finally:
            client.close()
        procs = [{"name": name, "pid": containers[name]["pid"], "state": STATES[containers[name]["state"]],
                  "port": rec.port, "container": rec.id[:12], "address": rec.address}
                 for name, rec in state.containers.items()]
        out = super()._status_from(state, procs, lambda node_id: containers.get(node_id, {}).get("state") == ctr.PAUSED)
        out.update(runtime="docker", docker_host=state.docker_host)
        return out

    # -- one container ----------------------------------------------------------------------------

    def _do(self, name: str, action: Any) -> str:
        with self._locked():
            state = self.state
            rec = self._container(state, name)
            client = self._client(state)
            try:
                return action(client, rec.id)
            except ctr.ContainerError as e:
                raise LabError(f"{name}: {e}") from e
            finally:
                client.close()

    def process_info(self, name: str) -> dict:
        state = self.state
        rec = self._container(state, name)
        client = self._client(state)
        try:
            got = ctr.info(client, rec.id)
        finally:
            client.close()
        return {"pid": got["pid"], "starttime": got["started_ms"], "state": STATES[got["state"]],
                "container": rec.id, "started_ms": got["started_ms"]}

    def node_process(self, node_id: str) -> dict:
        self.state.node(node_id)
        return self.process_info(node_id)

    def run_state(self, name: str, run: dict) -> tuple[str, str]:
        # A container keeps its id across restarts: a run is the container and when it started.
        state = self.state
        rec = self._container(state, name)
        client = self._client(state)
        try:
            got = ctr.info(client, rec.id)
        finally:
            client.close()
        if got["state"] != ctr.MISSING and got["started_ms"] != run["starttime"]:
            return processes.STOPPED, f"{name} (container {rec.id[:12]}): that run ended, the container started again"
        return STATES[got["state"]], f"{name} (container {rec.id[:12]}, pid {got['pid']}) {got['state']}"

    def answers_as(self, node_id: str, stats: dict, proc: dict) -> bool:
        # Inside its container the node has its own pid namespace: it is the same run of the
        # container when it started no earlier than the container did (one host clock).
        return proc.get("started_ms") is not None and (stats.get("started_ms") or 0) >= proc["started_ms"]

    def describe(self, name: str, proc: dict) -> str:
        return f"{name} (container {str(proc.get('container', ''))[:12]}, pid {proc['pid']})"

    def pause_undo(self, name: str, proc: dict) -> dict:
        return {"op": "unpause", "process": name, "container": proc.get("container")}

    def start_node(self, node_id: str, wait: bool = True) -> str:
        outcome = self._do(node_id, ctr.start)
        if wait and outcome == "started":
            state = self.state
            self._wait_node(state, node_id)
        return outcome

    def _wait_node(self, state: LabState, node_id: str) -> None:
        client = self._client(state)
        try:
            self._wait_http(client, state.containers[node_id], f"{state.node(node_id).url}/health")
        finally:
            client.close()

    def stop_node(self, node_id: str) -> str:
        return self._do(node_id, lambda c, cid: ctr.stop(c, cid, STOP_GRACE_S))

    def kill_node(self, node_id: str) -> str:
        return self._do(node_id, ctr.kill)

    def restart_node(self, node_id: str) -> str:
        self._do(node_id, lambda c, cid: ctr.restart(c, cid, STOP_GRACE_S))
        self._wait_node(self.state, node_id)
        return "restarted"

    def pause_node(self, node_id: str) -> str:
        return self._do(node_id, ctr.pause)

    def resume_node(self, node_id: str) -> str:
        return self._do(node_id, ctr.unpause)

    def pause_redis(self) -> str:
        return self._do(REDIS_PROCESS, ctr.pause)

    def resume_redis(self) -> str:
        return self._do(REDIS_PROCESS, ctr.unpause)

    def process(self, name: str) -> Any:
        raise LabError("the Docker lab runs containers, not processes of its own: use process_info")

    # -- Redis's data disk: a size-limited tmpfs in its container ------------------------------------

    def disk(self) -> RedisDisk:
        state = self.state
        disk = state.redis_disk
        if disk is None:
            raise LabError("this Docker lab's state names no Redis disk (started by an older version): "
                           "start it again")
        now = self.process_info(REDIS_PROCESS)["state"]
        if now != processes.RUNNING:
            raise LabError(f"Redis's container is {now}: its disk is not there to fill")
        return disk

    def disk_usage(self) -> dict[str, int]:
        path = self.disk().path
        got = self._do(REDIS_PROCESS, lambda c, cid: ctr.disk_usage(c, cid, path))
        total, free = got["size_kb"] * 1024, got["avail_kb"] * 1024
        return {"total_bytes": total, "free_bytes": free, "used_bytes": total - free}

    def disk_filler(self, stem: str) -> str:
        return f"{self.disk().path}/spool-{stem}.dat"

    def disk_fill(self, filler: str, leave_bytes: int) -> int:
        self.disk()
        filled = self._do(REDIS_PROCESS, lambda c, cid: ctr.fill_disk(c, cid, filler, leave_bytes // 1024))
        return filled["size_kb"] * 1024

    def disk_holds(self, filler: str) -> bool:
        return self._do(REDIS_PROCESS, lambda c, cid: ctr.holds(c, cid, filler))

    def disk_unfill_undo(self, filler: str) -> dict:
        # In the container: once the lab is down, the container and its tmpfs are gone with it.
        return {"op": "unfill", "process": REDIS_PROCESS, "file": filler}

    def unfill_disk(self, name: str, file: str) -> str:
        """Remove a filler from the container's disk: ``removed``, or why there is nothing to remove."""
        return self._do(name, lambda c, cid: ctr.unfill_disk(c, cid, file))
