"""The rate limiter's local lab: redis-server, a fault proxy, N nodes and a load generator.

Everything runs as detached processes, described by ``RUN_DIR/state.json`` (`LabState`) so that
any process can drive a lab another one started (``RateLimiterLab(run_dir)`` reads the state file
on every call).

Layout (BASE = ``base_port``, default 17100; Redis default 16379; addresses: see `addresses`)::

    redis-server             REDIS_HOST:REDIS      (--save '', no AOF, data in RUN_DIR/redis)
    proxy control API        PROXY_HOST:BASE+100
    proxy link of node i     LINK_HOST(i):BASE+100+i  -> redis   (link name = node id)
    node i (id "n<i>")       NODE_HOST(i):BASE+i   --redis redis://LINK_HOST(i):BASE+100+i/0
    load generator           no port; status in RUN_DIR/loadgen.json

By default every host is 127.0.0.1. Given an address block (``block="127.11.0"``), every part
listens on and connects from an address of its own in that block, so labs in different blocks
share port numbers without meeting, and one node's traffic can be told apart by its address.
Each process also runs in a cgroup v2 of its own (``operator-tui/rl-<hash of RUN_DIR>/<name>``,
when the machine has a cgroup v2 hierarchy), so iptables can match what it sends.

With ``redis_disk_mb``, Redis's data folder is a tmpfs of that size mounted at start (and
unmounted, verified, at `down`), and Redis saves every ``redis_save_s`` seconds: filling that disk
makes its background saves fail and Redis refuse writes (MISCONF), as a full disk does.

Each node reaches Redis only through its own proxy link, so one node's Redis connection can be
delayed or cut (`set_link`) while the others and the observer (which reads Redis directly at
``redis_url()``) are unaffected.

The same lab runs as containers (`docker_lab.DockerRateLimiterLab`, ``runtime: docker`` in the
state file); `open_lab(run_dir)` gives whichever of the two started there. What differs between
them is behind the lab's methods that faults and actions use: the run of a process or container
(`process_info`, `run_state`), kill, stop, restart, pause and their undo, Redis's disk (`disk*`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from containers.nodes import ContainerRecord
from subjects import lab_folder, netfault, processes, tmpfs
from subjects.plugin import PluginError
from subjects.processes import ProcessRecord
from subjects.ratelimiter import addresses
from subjects.ratelimiter.addresses import LOCALHOST, AddressError, AddressPlan

SUBJECT = "ratelimiter"
DEFAULT_REDIS_PORT = 16379
DEFAULT_BASE_PORT = 17100
PROXY_OFFSET = 100
MAX_NODES = addresses.MAX_NODES
CGROUP_PARENT = "operator-tui"
IDENT = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
DEFAULT_SAVE_S = 1
REDIS_DIR = "redis"
STATE_VERSION = 1
STATE_FILE = "state.json"
LOCK_FILE = "lab.lock"
LOADGEN_STATUS = "loadgen.json"
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
LOCK_TIMEOUT_S = 120.0
REDIS_PROCESS, PROXY_PROCESS, LOADGEN_PROCESS = "redis", "proxy", "loadgen"


class LabError(PluginError):
    """A lab problem a user can act on (port taken, lab already up, not up, failed start)."""


class NodeOptions(BaseModel):
    """How the lab starts its nodes (tests shorten the registry TTL and Redis timeouts)."""

    heartbeat_ms: int = 1000
    node_ttl_ms: int = 3000
    redis_timeout_ms: int = 500
    default_limit: int = 100
    default_window_ms: int = 1000
    fail_mode: str = "closed"
    local_cache_ms: int = 0


class NodeSpec(BaseModel):
    id: str
    port: int
    url: str
    link_port: int
    redis_url: str  # what the node connects to: its proxy link
    host: str = LOCALHOST  # where it listens and connects from
    link_host: str = LOCALHOST  # where its proxy link listens


class RedisDisk(BaseModel):
    """Redis's data folder as a tmpfs of its own (written before it is mounted)."""

    path: str  # on the host; in the Docker lab, inside Redis's container
    size_mb: int
    save_s: int  # Redis saves (BGSAVE) every save_s seconds after at least one write


class LabState(BaseModel):
    version: int = STATE_VERSION
    subject: str = SUBJECT
    run_dir: str
    started_at: str
    redis_port: int
    redis_url: str
    proxy_control_port: int
    proxy_url: str
    nodes: list[NodeSpec]
    node_options: NodeOptions
    load: bool
    load_args: list[str] = []
    processes: dict[str, ProcessRecord] = {}
    block: str | None = None  # address block "127.B.C" (see `addresses`); None: all on 127.0.0.1
    redis_host: str = LOCALHOST
    proxy_host: str = LOCALHOST
    cgroup: str | None = None  # the lab's cgroup v2 (each process in CGROUP/<name>), when it has one
    redis_disk: RedisDisk | None = None
    # "process" (this module) or "docker" (subjects.ratelimiter.docker_lab): same layout, as containers
    runtime: str = "process"
    docker_host: str | None = None
    engine_started: bool = False  # the docker lab started the local engine, and stops it at `down`
    containers: dict[str, ContainerRecord] = {}

    @property
    def plan(self) -> AddressPlan:
        return AddressPlan(self.block)

    def node(self, node_id: str) -> NodeSpec:
        for spec in self.nodes:
            if spec.id == node_id:
                return spec
        known = ", ".join(n.id for n in self.nodes)
        raise LabError(f"no node {node_id!r} in this lab; nodes: {known}")

    def ports(self) -> dict[str, int]:
        """Every port the lab listens on, by what listens there."""
        return {what: port for what, (_, port) in self.endpoints().items()}

    def endpoints(self) -> dict[str, tuple[str, int]]:
        """Every (address, port) the lab listens on, by what listens there."""
        found = {REDIS_PROCESS: (self.redis_host, self.redis_port),
                 "proxy control": (self.proxy_host, self.proxy_control_port)}
        for spec in self.nodes:
            found[spec.id] = (spec.host, spec.port)
            found[f"link {spec.id}"] = (spec.link_host, spec.link_port)
        return found


def plan_ports(nodes: int, redis_port: int, base_port: int) -> dict[str, int]:
    """The lab's ports (see the module docstring); LabError when they do not fit or overlap."""
    if not 1 <= nodes <= MAX_NODES:
        raise LabError(f"--nodes must be between 1 and {MAX_NODES}, got {nodes}")
    if not 1024 <= redis_port <= 65535:
        raise LabError(f"--redis-port must be between 1024 and 65535, got {redis_port}")
    if not 1024 <= base_port <= 65535 - PROXY_OFFSET - nodes:
        raise LabError(
            f"--base-port must be between 1024 and {65535 - PROXY_OFFSET - nodes} "
            f"(nodes use BASE+1..BASE+{nodes}, the proxy BASE+{PROXY_OFFSET}..BASE+{PROXY_OFFSET + nodes}), got {base_port}"
        )
    ports = {REDIS_PROCESS: redis_port, "proxy control": base_port + PROXY_OFFSET}
    for i in range(1, nodes + 1):
        ports[f"n{i}"] = base_port + i
        ports[f"link n{i}"] = base_port + PROXY_OFFSET + i
    if list(ports.values()).count(redis_port) > 1:
        raise LabError(
            f"--redis-port {redis_port} collides with the ports derived from --base-port {base_port}"
        )
    return ports


def free_lab_ports(nodes: int) -> tuple[int, int]:
    """(redis port, base port) whose every planned port is free (see the module docstring)."""
    rng = random.Random()
    low, high = processes.FREE_PORT_RANGE
    for _ in range(500):
        base = rng.randrange(low, high - PROXY_OFFSET - nodes - 1)
        wanted = [base + i for i in range(1, nodes + 1)] + [base + PROXY_OFFSET + i for i in range(nodes + 1)]
        if all(processes.port_free(p) for p in wanted):
            break
    else:
        raise LabError("no free range of ports found for the lab")
    while True:
        redis_port = processes.free_port(rng)
        if not base < redis_port <= base + PROXY_OFFSET + nodes:
            return redis_port, base


class RateLimiterLab:
    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir).expanduser().resolve()

    @classmethod
    def load(cls, run_dir: str | Path) -> RateLimiterLab:
        """The lab whose state file is in `run_dir` (e.g. started by `lab up`); LabError if none."""
        lab = open_lab(run_dir)
        lab.state  # noqa: B018 - raises LabError when no lab is up there
        return lab

    # -- state file and lock -------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.run_dir / STATE_FILE

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    @contextlib.contextmanager
    def _locked(self, create: bool = False) -> Iterator[None]:
        """One lab command at a time per run folder, across processes."""
        if create:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        elif not self.run_dir.is_dir():
            self.state  # noqa: B018 - raises the "no lab is up" LabError rather than creating a folder
        busy = LabError(f"another lab command has held {self.run_dir} for {LOCK_TIMEOUT_S:.0f}s")
        with lab_folder.locked(self.run_dir / LOCK_FILE, LOCK_TIMEOUT_S, lambda: busy):
            yield

    def _read(self) -> LabState | None:
        try:
            text = self.state_path.read_text()
        except FileNotFoundError:
            return None
        try:
            return LabState.model_validate_json(text)
        except ValidationError as e:
            raise LabError(
                f"{self.state_path} is not a lab state file this version understands: {e.errors()[0]['msg']}"
            ) from e

    def _write(self, state: LabState) -> None:
        lab_folder.write_whole(self.state_path, state.model_dump_json(indent=2))

    @property
    def state(self) -> LabState:
        state = self._read()
        if state is None:
            raise LabError(
                f"no {SUBJECT} lab is up in {self.run_dir} (start one with `operator-tui lab up {SUBJECT}`)"
            )
        return state

    def is_up(self) -> bool:
        state = self._read()
        return state is not None and any(processes.is_live(p) for p in state.processes.values())

    # -- addresses -----------------------------------------------------------------------------

    def node_ids(self) -> list[str]:
        return [n.id for n in self.state.nodes]

    def node_urls(self) -> dict[str, str]:
        return {n.id: n.url for n in self.state.nodes}

    def redis_url(self) -> str:
        return self.state.redis_url

    def proxy_url(self) -> str:
        return self.state.proxy_url

    def redis(self):
        """A synchronous client straight to redis-server (not through any proxy link)."""
        import redis

        return redis.Redis.from_url(self.redis_url(), socket_timeout=2.0, socket_connect_timeout=2.0)

    # -- up ------------------------------------------------------------------------------------

    def up(
        self,
        nodes: int = 3,
        redis_port: int | None = None,
        base_port: int | None = None,
        load: bool = True,
        node_options: NodeOptions | None = None,
        load_args: list[str] | None = None,
        block: str | None = None,
        redis_disk_mb: int | None = None,
        redis_save_s: int = DEFAULT_SAVE_S,
        ident: str | None = None,
    ) -> LabState:
        """Start everything and return once every node answers /health with 200.

        `block` ("127.B.C" or "127.B.C.0/24") gives every part an address of its own (see
        `addresses`); `redis_disk_mb` puts Redis's data on a tmpfs of that size, saved every
        `redis_save_s` seconds. `ident` names the lab's cgroup (default: from the run folder)."""
        redis_port = DEFAULT_REDIS_PORT if redis_port is None else redis_port
        base_port = DEFAULT_BASE_PORT if base_port is None else base_port
        ports = plan_ports(nodes, redis_port, base_port)
        try:
            plan = AddressPlan(block)
        except AddressError as e:
            raise LabError(str(e)) from e
        if redis_disk_mb is not None and not 1 <= redis_disk_mb <= 4096:
            raise LabError(f"--redis-disk-mb must be between 1 and 4096, got {redis_disk_mb}")
        if not 1 <= redis_save_s <= 3600:
            raise LabError(f"redis_save_s must be between 1 and 3600, got {redis_save_s}")
        server = shutil.which("redis-server")
        if server is None:
            raise LabError("redis-server is not installed (Debian: apt-get install redis-server)")
        with self._locked(create=True):
            old = self._read()
            if old is not None:
                live = [f"{p.name} (pid {p.pid})" for p in old.processes.values() if processes.is_live(p)]
                if live:
                    raise LabError(
                        f"a {SUBJECT} lab is already up in {self.run_dir}: {', '.join(live)}; "
                        f"stop it with `operator-tui lab down {SUBJECT}`"
                    )
                left = self._release(old)
                if left:
                    raise LabError(f"the previous lab in {self.run_dir} left things behind: {'; '.join(left)}")
                self._remove_transient()
            state = LabState(
                run_dir=str(self.run_dir),
                started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                redis_port=redis_port,
                redis_url=f"redis://{plan.redis}:{redis_port}/0",
                proxy_control_port=ports["proxy control"],
                proxy_url=f"http://{plan.proxy}:{ports['proxy control']}",
                nodes=[
                    NodeSpec(
                        id=f"n{i}",
                        port=ports[f"n{i}"],
                        url=f"http://{plan.node(i)}:{ports[f'n{i}']}",
                        link_port=ports[f"link n{i}"],
                        redis_url=f"redis://{plan.link(i)}:{ports[f'link n{i}']}/0",
                        host=plan.node(i),
                        link_host=plan.link(i),
                    )
                    for i in range(1, nodes + 1)
                ],
                node_options=node_options or NodeOptions(),
                load=load,
                load_args=load_args or [],
                block=plan.block,
                redis_host=plan.redis,
                proxy_host=plan.proxy,
                cgroup=self.cgroup_path(ident) if netfault.cgroup_available() else None,
                redis_disk=RedisDisk(path=str(self.run_dir / REDIS_DIR), size_mb=redis_disk_mb, save_s=redis_save_s)
                if redis_disk_mb is not None
                else None,
            )
            taken = [
                f"{host}:{port} ({what})" if plan.block else f"{port} ({what})"
                for what, (host, port) in state.endpoints().items()
                if not processes.port_free(port, host)
            ]
            if taken:
                raise LabError(
                    f"port{'s' if len(taken) > 1 else ''} already in use: {', '.join(taken)}; "
                    "choose others with --redis-port / --base-port"
                )
            shutil.rmtree(self.logs_dir, ignore_errors=True)
            try:
                self._write(state)  # write-ahead: a mount or cgroup made below is always on record
                self._start_all(state, server)
            except BaseException as e:
                # Leave nothing half-started behind: stop what did start, then report why.
                self._stop_all(state)
                left = self._release(state)
                if not left:
                    self._remove_transient()
                if isinstance(e, KeyboardInterrupt):
                    raise
                why = str(e) if isinstance(e, LabError) else f"lab failed to start: {type(e).__name__}: {e}"
                if left:
                    why += f" (and could not clean up: {'; '.join(left)}; state kept in {self.state_path})"
                if isinstance(e, LabError) and not left:
                    raise
                raise LabError(why) from e
            return state

    def cgroup_path(self, ident: str | None = None) -> str:
        """The lab's cgroup (relative to the v2 root): `ident`, or unique per run folder."""
        if ident is not None and not IDENT.match(ident):
            raise LabError(f"bad lab ident {ident!r}: letters, digits, - and _, at most 32")
        return f"{CGROUP_PARENT}/rl-{ident or hashlib.sha1(str(self.run_dir).encode()).hexdigest()[:10]}"

    def _spawn(self, state: LabState, name: str, argv: list[str], log: str, **kwargs) -> ProcessRecord:
        cgroup = None
        if state.cgroup:
            cgroup = f"{state.cgroup}/{name}"
            netfault.cgroup_create(cgroup)
        return processes.spawn(name, argv, self.logs_dir / log, cgroup=cgroup, **kwargs)

    def _redis_argv(self, state: LabState, server: str) -> list[str]:
        disk = state.redis_disk
        argv = [
            server,
            "--bind", state.redis_host,
            "--port", str(state.redis_port),
            "--appendonly", "no",
            "--dir", str(self.run_dir / REDIS_DIR),
            "--daemonize", "no",
            # Protected mode accepts clients from 127.0.0.1 only; on an address block the clients
            # come from their own loopback addresses (the server still listens on loopback only).
            "--protected-mode", "yes" if state.redis_host == LOCALHOST else "no",
            "--loglevel", "notice",
        ]  # fmt: skip
        return [*argv, *redis_save_args(disk)]

    def _start_all(self, state: LabState, server: str) -> None:
        redis_dir = self.run_dir / REDIS_DIR
        redis_dir.mkdir(parents=True, exist_ok=True)
        if state.redis_disk is not None:
            try:
                tmpfs.mount(redis_dir, state.redis_disk.size_mb)
            except tmpfs.TmpfsError as e:
                raise LabError(f"Redis's disk: {e}") from e
        rec = self._spawn(
            state, REDIS_PROCESS, self._redis_argv(state, server), "redis.log",
            port=state.redis_port, host=state.redis_host,
        )  # fmt: skip
        self._record(state, rec)
        self._wait_redis(state, rec)

        argv = [
            sys.executable,
            "-m",
            "subjects.ratelimiter.proxy",
            "--control-port",
            str(state.proxy_control_port),
            "--bind",
            state.proxy_host,
            "--source-address",
            state.proxy_host,
        ]
        argv += ["--upstream", f"{state.redis_host}:{state.redis_port}"]
        for spec in state.nodes:
            argv += ["--link", f"{spec.id}={spec.link_host}:{spec.link_port}"]
        rec = self._spawn(
            state, PROXY_PROCESS, argv, "proxy.log", env=processes.child_env(), port=state.proxy_control_port,
            host=state.proxy_host,
        )  # fmt: skip
        self._record(state, rec)
        if not processes.wait_port(state.proxy_control_port, START_TIMEOUT_S, alive=rec, host=state.proxy_host):
            raise LabError(f"the proxy did not start: {processes.log_tail(rec.log)}")

        for spec in state.nodes:
            self._record(state, self._spawn_node(state, spec))
        deadline = time.monotonic() + START_TIMEOUT_S
        for spec in state.nodes:
            self._wait_node_healthy(state, spec, deadline)

        if state.load:
            self._spawn_load(state)

    def _spawn_load(self, state: LabState) -> None:
        argv = [
            sys.executable,
            "-m",
            "subjects.ratelimiter.loadgen",
            "--status-file",
            str(self.run_dir / LOADGEN_STATUS),
            "--source-address",
            state.plan.loadgen,
        ]
        for spec in state.nodes:
            argv += ["--seed-url", spec.url]
        rec = self._spawn(
            state, LOADGEN_PROCESS, argv + state.load_args, "loadgen.log", env=processes.child_env(),
            host=state.plan.loadgen,
        )
        self._record(state, rec)
        time.sleep(0.3)
        if not processes.is_live(rec):
            raise LabError(f"the load generator exited at once: {processes.log_tail(rec.log)}")

    def start_load(self) -> str:
        """Start the load generator of a lab brought up without it: ``started`` or ``already running``."""
        with self._locked():
            state = self.state
            rec = state.processes.get(LOADGEN_PROCESS)
            if rec is not None and processes.is_live(rec):
                return "already running"
            state.load = True
            self._spawn_load(state)
            return "started"

    def stop_load(self) -> str:
        """Stop the load generator (the rest of the lab keeps running)."""
        with self._locked():
            state = self.state
            rec = state.processes.get(LOADGEN_PROCESS)
            outcome = "not running" if rec is None else processes.stop(rec, STOP_GRACE_S)
            state.load = False
            self._write(state)
            return outcome

    def _record(self, state: LabState, rec: ProcessRecord) -> None:
        state.processes[rec.name] = rec
        self._write(state)

    def _wait_redis(self, state: LabState, rec: ProcessRecord) -> None:
        import redis

        client = redis.Redis(
            host=state.redis_host, port=state.redis_port, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError as e:
                    if not processes.is_live(rec):
                        raise LabError(f"redis-server exited: {processes.log_tail(rec.log)}") from e
                    if time.monotonic() > deadline:
                        raise LabError(
                            f"redis-server did not answer PING within {START_TIMEOUT_S:.0f}s: {e}"
                        ) from e
                    time.sleep(0.05)
        finally:
            client.close()

    def _spawn_node(self, state: LabState, spec: NodeSpec) -> ProcessRecord:
        o = state.node_options
        argv = [
            sys.executable, "-m", "subjects.ratelimiter.service",
            "--node-id", spec.id,
            "--host", spec.host,
            "--port", str(spec.port),
            "--redis", spec.redis_url,
            "--source-address", spec.host,
            "--fail-mode", o.fail_mode,
            "--local-cache-ms", str(o.local_cache_ms),
            "--default-limit", str(o.default_limit),
            "--default-window-ms", str(o.default_window_ms),
            "--heartbeat-ms", str(o.heartbeat_ms),
            "--node-ttl-ms", str(o.node_ttl_ms),
            "--redis-timeout-ms", str(o.redis_timeout_ms),
        ]  # fmt: skip
        return self._spawn(
            state, spec.id, argv, f"{spec.id}.log", env=processes.child_env(), port=spec.port, host=spec.host
        )

    def _wait_node_healthy(self, state: LabState, spec: NodeSpec, deadline: float) -> None:
        rec = state.processes[spec.id]

        def alive() -> None:
            if not processes.is_live(rec):
                raise LabError(f"node {spec.id} exited: {processes.log_tail(rec.log)}")

        wait_answering(f"{spec.url}/health", deadline, alive, f"node {spec.id}")

    # -- down ----------------------------------------------------------------------------------

    def down(self) -> dict:
        """Stop every process (load, nodes, proxy, redis), unmount Redis's disk, remove the lab's
        cgroups, verify nothing is left, clean up.

        Returns ``{"run_dir", "stopped": [{"name", "pid", "outcome"}], "ports_checked",
        "ports_still_listening", "unmounted", "cgroups_removed", "removed", "logs"}``; raises
        LabError if something survived.
        """
        with self._locked():
            state = self.state
            stopped = self._stop_all(state)
            endpoints = state.endpoints()
            deadline = time.monotonic() + STOP_GRACE_S
            while True:
                table = processes.listening()
                left = {what: hp for what, hp in endpoints.items() if processes.is_listening(*hp, table)}
                if not left or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            survivors = [s for s in stopped if s["outcome"].startswith("FAILED")]
            leftovers = [] if survivors else self._release(state)
            # Keep the state file while anything survives: it is how the next `down` finds it.
            removed = [] if survivors or left or leftovers else self._remove_transient()
            report = {
                "run_dir": str(self.run_dir),
                "stopped": stopped,
                "ports_checked": sorted(p for _, p in endpoints.values()),
                "ports_still_listening": [
                    f"{h}:{p} ({what})" if state.block else f"{p} ({what})" for what, (h, p) in left.items()
                ],
                "unmounted": state.redis_disk.path if state.redis_disk and not survivors else None,
                "cgroups_removed": state.cgroup if state.cgroup and not survivors else None,
                "removed": removed,
                "logs": str(self.logs_dir),
            }
            if survivors or left or leftovers:
                problems = [f"{s['name']} (pid {s['pid']}): {s['outcome']}" for s in survivors]
                problems += [f"port {p} still listening" for p in report["ports_still_listening"]]
                problems += leftovers
                raise LabError(
                    "lab down left things behind: "
                    + "; ".join(problems)
                    + f"; state kept in {self.state_path}"
                )
            return report

    def _stop_all(self, state: LabState) -> list[dict]:
        order = [LOADGEN_PROCESS] + [n.id for n in state.nodes] + [PROXY_PROCESS, REDIS_PROCESS]
        out = []
        for name in order:
            rec = state.processes.get(name)
            if rec is None:
                continue
            try:
                outcome = processes.stop(rec, STOP_GRACE_S)
            except RuntimeError as e:
                outcome = f"FAILED: {e}"
            out.append({"name": name, "pid": rec.pid, "outcome": outcome})
        return out

    def _release(self, state: LabState) -> list[str]:
        """Unmount Redis's disk and remove the lab's cgroups (once its processes are gone), by what
        the state file recorded; returns what could not be released."""
        left = []
        if state.redis_disk is not None and not tmpfs.unmount(state.redis_disk.path):
            left.append(f"{state.redis_disk.path} is still mounted")
        if state.cgroup and not _remove_cgroup(state.cgroup):
            pids = [pid for name in state.processes for pid in netfault.cgroup_pids(f"{state.cgroup}/{name}")]
            left.append(f"cgroup {state.cgroup} still holds processes {pids}")
        return left

    def _remove_transient(self) -> list[str]:
        removed = []
        for name in (STATE_FILE, LOADGEN_STATUS, "state.tmp"):
            path = self.run_dir / name
            if path.exists():
                path.unlink()
                removed.append(str(path))
        redis_dir = self.run_dir / REDIS_DIR
        if redis_dir.exists() and not tmpfs.is_mounted(redis_dir):
            shutil.rmtree(redis_dir, ignore_errors=True)
            removed.append(str(redis_dir))
        return removed

    # -- status --------------------------------------------------------------------------------

    def status(self) -> dict:
        """Processes (pid, state, address, port), node health, proxy links, Redis's disk, load."""
        state = self.state
        procs = []
        for name, rec in state.processes.items():
            procs.append(
                {"name": name, "pid": rec.pid, "state": processes.process_state(rec), "host": rec.host,
                 "port": rec.port, "cgroup": rec.cgroup}
            )
        return self._status_from(state, procs, lambda node_id: any(
            p["name"] == node_id and p["state"] == processes.PAUSED for p in procs))

    def _status_from(self, state: LabState, procs: list[dict], paused: Any) -> dict:
        nodes = []
        for spec in state.nodes:
            health, detail = "unreachable", None
            if paused(spec.id):
                health, detail = "paused", "frozen (SIGSTOP or the cgroup freezer)"
            else:
                try:
                    r = httpx.get(f"{spec.url}/health", timeout=1.5)
                    body = r.json()
                    health = "ok" if r.status_code == 200 else "unavailable"
                    detail = body.get("reason")
                except (httpx.HTTPError, ValueError) as e:
                    detail = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            nodes.append(
                {"id": spec.id, "url": spec.url, "port": spec.port, "health": health, "detail": detail}
            )
        try:
            links = self.links()
        except LabError as e:
            links = {"error": str(e)}
        loadgen = None
        with contextlib.suppress(OSError, ValueError):
            loadgen = json.loads((self.run_dir / LOADGEN_STATUS).read_text())
        disk = None
        if state.redis_disk is not None:
            disk = {**state.redis_disk.model_dump(), "mounted": False}
            with contextlib.suppress(LabError, OSError):
                disk.update(self.disk_usage(), mounted=True)
        live = any(p["state"] in (processes.RUNNING, processes.PAUSED) for p in procs)
        return {
            "subject": SUBJECT,
            "run_dir": str(self.run_dir),
            "up": live,
            "started_at": state.started_at,
            "addresses": state.plan.cidr(),
            "redis_url": state.redis_url,
            "proxy_url": state.proxy_url,
            "redis_disk": disk,
            "cgroup": state.cgroup,
            "processes": procs,
            "nodes": nodes,
            "links": links,
            "loadgen": loadgen,
        }

    # -- one node ------------------------------------------------------------------------------

    def _node_rec(self, state: LabState, node_id: str) -> ProcessRecord:
        state.node(node_id)
        rec = state.processes.get(node_id)
        if rec is None:
            raise LabError(f"node {node_id} was never started in this lab")
        return rec

    def start_node(self, node_id: str, wait: bool = True) -> str:
        """Start a node that is not running (same arguments as at `up`); ``already running`` otherwise."""
        with self._locked():
            state = self.state
            spec = state.node(node_id)
            rec = state.processes.get(node_id)
            if rec is not None and processes.is_live(rec):
                return "already running"
            if rec is not None:
                processes.reap(rec.pid)
            if not processes.port_free(spec.port, spec.host):
                raise LabError(f"cannot start {node_id}: port {spec.host}:{spec.port} is in use")
            new = self._spawn_node(state, spec)
            self._record(state, new)
        if wait and not processes.wait_port(spec.port, START_TIMEOUT_S, alive=new, host=spec.host):
            raise LabError(f"node {node_id} did not start: {processes.log_tail(new.log)}")
        return "started"

    def stop_node(self, node_id: str) -> str:
        """SIGTERM (the node marks itself stopped in the registry), SIGKILL after a grace period."""
        with self._locked():
            return processes.stop(self._node_rec(self.state, node_id), STOP_GRACE_S)

    def kill_node(self, node_id: str) -> str:
        """SIGKILL: the node cannot say goodbye; the registry shows it down after its TTL."""
        with self._locked():
            rec = self._node_rec(self.state, node_id)
            if not processes.send(rec, signal.SIGKILL):
                return "not running"
            processes.wait_dead(rec, 5.0)
            processes.reap(rec.pid)
            return "killed"

    def restart_node(self, node_id: str) -> str:
        self.stop_node(node_id)
        self.start_node(node_id)
        return "restarted"

    def pause_node(self, node_id: str) -> str:
        with self._locked():
            return self._signal(self._node_rec(self.state, node_id), signal.SIGSTOP)

    def resume_node(self, node_id: str) -> str:
        with self._locked():
            return self._signal(self._node_rec(self.state, node_id), signal.SIGCONT)

    @staticmethod
    def _signal(rec: ProcessRecord, sig: signal.Signals) -> str:
        """SIGSTOP/SIGCONT, returning once it took effect: ``paused``, ``resumed`` or ``not running``."""
        try:
            sent = processes.signal_and_wait(rec, sig)
        except RuntimeError as e:
            raise LabError(str(e)) from e
        if not sent:
            return "not running"
        return "paused" if sig == signal.SIGSTOP else "resumed"

    def node_process(self, node_id: str) -> dict:
        """``{"pid", "starttime", "state"}`` of a node's process."""
        rec = self._node_rec(self.state, node_id)
        return {"pid": rec.pid, "starttime": rec.starttime, "state": processes.process_state(rec)}

    def process_info(self, name: str) -> dict:
        """``{"pid", "starttime", "state"}`` of any of the lab's processes (a node, ``redis``)."""
        rec = self.process(name)
        return {"pid": rec.pid, "starttime": rec.starttime, "state": processes.process_state(rec)}

    def run_state(self, name: str, run: dict) -> tuple[str, str]:
        """The state of one run of `name` (`run` as `process_info` gave it, e.g. when a fault was
        planned) and how it reads: that very process, so a restarted node's old run is ``stopped``."""
        rec = ProcessRecord(name=name, pid=run["pid"], starttime=run["starttime"], argv=[], log="")
        state = processes.process_state(rec)
        letter = processes.status_letter(run["pid"]) if state != processes.STOPPED else None
        return state, f"{name} (pid {run['pid']}) {state}" + (f", State {letter}" if letter else "")

    def answers_as(self, node_id: str, stats: dict, proc: dict) -> bool:
        """Whether a node's /api/stats comes from the process `proc` (from `node_process`)."""
        return stats.get("pid") == proc["pid"]

    def pause_undo(self, name: str, proc: dict) -> dict:
        """The undo step of pausing the process `name` (a node, ``redis``) whose info is `proc`."""
        return {"op": "signal", "process": name, "pid": proc["pid"], "starttime": proc["starttime"],
                "signal": "SIGCONT"}

    def pause(self, name: str) -> str:
        return self.pause_redis() if name == REDIS_PROCESS else self.pause_node(name)

    def resume(self, name: str) -> str:
        return self.resume_redis() if name == REDIS_PROCESS else self.resume_node(name)

    def describe(self, name: str, proc: dict) -> str:
        """How faults name a process: ``n2 (pid 1234)``."""
        return f"{name} (pid {proc['pid']})"

    def node_cgroup(self, node_id: str) -> str | None:
        """The cgroup v2 a node's process runs in (what a partition can match its traffic by)."""
        rec = self.state.processes.get(node_id)
        return rec.cgroup if rec is not None else None

    # -- Redis's data disk (the redis_disk_full fault) --------------------------------------------

    def disk(self) -> RedisDisk:
        """Redis's own data disk; LabError, saying how to get one, when the lab has none."""
        disk = self.state.redis_disk
        if disk is None:
            raise LabError("this lab's Redis has no disk of its own to fill: start the lab with --redis-disk-mb MB "
                           "(a tmpfs of that size) or --docker (a tmpfs in Redis's container)")
        if not tmpfs.is_mounted(disk.path):
            raise LabError(f"Redis's disk {disk.path} is not mounted")
        return disk

    def disk_usage(self) -> dict[str, int]:
        """``{"total_bytes", "free_bytes", "used_bytes"}`` of Redis's data disk."""
        return tmpfs.usage(self.disk().path)

    def disk_filler(self, stem: str) -> str:
        """Where a filler named `stem` goes: a neutral name that tells an agent nothing."""
        return str(Path(self.disk().path) / f"spool-{stem}.dat")

    def disk_fill(self, filler: str, leave_bytes: int) -> int:
        """Fill Redis's disk with one new file, leaving about `leave_bytes` free; returns its size."""
        path = Path(filler)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            # The free space moves while Redis writes: take what is free now, a little less on ENOSPC.
            for _ in range(20):
                size = max(0, self.disk_usage()["free_bytes"] - leave_bytes)
                try:
                    if size:
                        os.posix_fallocate(fd, 0, size)
                    return size
                except OSError:
                    leave_bytes += 4096
            raise LabError(f"could not fill {self.disk().path}")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)

    def disk_holds(self, filler: str) -> bool:
        return Path(filler).exists()

    def disk_unfill_undo(self, filler: str) -> dict:
        """The undo step that removes a filler: a host step here (the file is on the host, and a
        lab that is gone took its disk with it)."""
        return {"op": "remove_file", "path": filler}

    def save_and_wait(self, timeout_s: float = 10.0) -> str:
        """A BGSAVE that starts now (not one already under way) and its outcome: ``ok`` or ``err``.
        With save points configured, an ``err`` makes Redis refuse writes and an ``ok`` ends that."""
        import redis

        client = self.redis()
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                forks = client.info("stats")["total_forks"]
                try:
                    client.bgsave()
                    break
                except redis.ResponseError as e:
                    if "in progress" not in str(e) or time.monotonic() > deadline:
                        raise LabError(f"BGSAVE: {e}") from e
                    time.sleep(0.05)
            # Done once no save runs and one forked since we asked (ours, or a later one).
            while time.monotonic() < deadline:
                info = client.info("persistence")
                if not info.get("rdb_bgsave_in_progress") and client.info("stats")["total_forks"] > forks:
                    return str(info.get("rdb_last_bgsave_status"))
                time.sleep(0.05)
            raise LabError(f"BGSAVE did not finish within {timeout_s:.0f}s")
        except redis.RedisError as e:
            raise LabError(f"BGSAVE: {type(e).__name__}: {e}") from e
        finally:
            client.close()

    def process(self, name: str) -> ProcessRecord:
        state = self.state
        if name not in state.processes:
            raise LabError(f"no process {name!r} in this lab; processes: {', '.join(state.processes)}")
        return state.processes[name]

    # -- redis-server and the proxy --------------------------------------------------------------

    def pause_redis(self) -> str:
        with self._locked():
            return self._signal(self.process(REDIS_PROCESS), signal.SIGSTOP)

    def resume_redis(self) -> str:
        with self._locked():
            return self._signal(self.process(REDIS_PROCESS), signal.SIGCONT)

    def links(self) -> dict:
        """The proxy's links: ``{NAME: {"name", "listen_port", "upstream", "mode", "delay_ms", ...}}``."""
        try:
            r = httpx.get(f"{self.proxy_url()}/links", timeout=2.0)
            r.raise_for_status()
        except httpx.HTTPError as e:
            raise LabError(f"the fault proxy does not answer at {self.proxy_url()}: {e}") from e
        return r.json()["links"]

    def set_link(self, target: str, mode: str = "pass", delay_ms: int = 0) -> dict:
        """Set one node's Redis link (by node id) or every link (``*``).

        Returns the proxy's answer: ``{"links": {...}, "previous": {NAME: {"mode", "delay_ms"}},
        "reset_connections": N}``. LabError on an unknown target or mode.
        """
        if target != "*":
            self.state.node(target)
        try:
            r = httpx.put(
                f"{self.proxy_url()}/links/{target}", json={"mode": mode, "delay_ms": delay_ms}, timeout=5.0
            )
        except httpx.HTTPError as e:
            raise LabError(f"the fault proxy does not answer at {self.proxy_url()}: {e}") from e
        if r.status_code != 200:
            raise LabError(r.json().get("error", r.text))
        return r.json()


def _remove_cgroup(path: str, timeout_s: float = STOP_GRACE_S) -> bool:
    """Remove a cgroup whose processes were just stopped: one that exited a moment ago may still
    be listed for a short while."""
    deadline = time.monotonic() + timeout_s
    while not netfault.cgroup_remove(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def redis_save_args(disk: RedisDisk | None) -> list[str]:
    """Redis's persistence flags: none without a disk of its own; with one, save points, which are
    what make a full disk refuse writes (stop-writes-on-bgsave-error applies to configured saves)."""
    if disk is None:
        return ["--save", ""]
    return ["--save", f"{disk.save_s} 1", "--stop-writes-on-bgsave-error", "yes", "--dbfilename", "dump.rdb",
            # A lab's data goes at `down`; saving it on the way out would keep a full disk's Redis
            # from exiting on SIGTERM at all.
            "--shutdown-on-sigterm", "nosave"]


def wait_answering(url: str, deadline: float, alive: Callable[[], None], what: str) -> None:
    """Poll `url` until it answers 200; `alive()` raises LabError once what should answer has died."""
    last = "no answer yet"
    while time.monotonic() < deadline:
        alive()
        try:
            r = httpx.get(url, timeout=2.0)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except httpx.HTTPError as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.1)
    raise LabError(f"{what} not answering {url} within {START_TIMEOUT_S:.0f}s ({last})")


def open_lab(run_dir: str | Path) -> RateLimiterLab:
    """The lab object for the state file in `run_dir`: process or Docker, whichever started it (a
    folder with no lab gets the process lab, whose calls then say that no lab is up)."""
    lab = RateLimiterLab(run_dir)
    state = lab._read()
    if state is not None and state.runtime == "docker":
        from subjects.ratelimiter.docker_lab import DockerRateLimiterLab

        return DockerRateLimiterLab(run_dir)
    return lab
