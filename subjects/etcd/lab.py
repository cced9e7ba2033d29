"""The etcd lab: real Debian `etcd` members on loopback, each on an address of its own, plus a load generator.

Everything is described by ``RUN_DIR/state.json`` (`LabState`), so any process (the CLI, the
operator's actions, the chaos commands) can drive a lab another one started. Layout (BLOCK is the
address block, "127.0.0" by default; the evaluation harness runs one lab per slot on 127.(k+10).0)::

    member m<i>     client http://BLOCK.i:CLIENT_PORT, peer http://BLOCK.i:PEER_PORT
                    folder RUN_DIR/members/m<i> (its own small tmpfs), data dir .../data
                    log RUN_DIR/logs/m<i>.log, cgroup operator-tui/etcd-<lab id>/m<i>
    load generator  status in RUN_DIR/loadgen.json

Each member runs in its own cgroup (v2) so a partition can match its outgoing traffic
(`subjects.netfault`), and on its own tmpfs so that filling one member's disk touches nobody else.
Every process is recorded with pid and start time; faults register their iptables chains and
helper processes here, so `down` removes whatever they left and proves nothing is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from containers.nodes import ContainerRecord
from subjects import lab_folder, netfault, processes
from subjects.etcd.client import EtcdError, call_sync
from subjects.plugin import PluginError
from subjects.processes import ProcessRecord

SUBJECT = "etcd"
DEFAULT_BLOCK = "127.0.0"
DEFAULT_CLIENT_PORT = 23790
DEFAULT_PEER_PORT = 23800
MAX_MEMBERS = 9
STATE_VERSION = 1
STATE_FILE = "state.json"
LOCK_FILE = "lab.lock"
LOADGEN_STATUS = "loadgen.json"
LOADGEN_PROCESS = "loadgen"
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
PORT_RELEASE_S = 1.0  # a killed member's listeners close a few ms after it is reaped
LOCK_TIMEOUT_S = 120.0
BLOCK = re.compile(r"^127\.(\d{1,3})\.(\d{1,3})$")


class LabError(PluginError):
    """A lab problem a user can act on (address taken, lab already up, not up, failed start)."""


class EtcdFlags(BaseModel):
    """How members run: lab-friendly raft timing (elections in about 0.5 s), pre-vote, a small quota."""

    heartbeat_ms: int = 50
    election_ms: int = 500
    pre_vote: bool = True
    quota_bytes: int = 16 * 1024 * 1024
    snapshot_count: int | None = None  # etcd's default (100,000) when None


class MemberSpec(BaseModel):
    name: str
    index: int
    address: str
    client_url: str
    peer_url: str
    folder: str  # the member's own folder (its tmpfs mount point when tmpfs_mb > 0)
    data_dir: str
    log: str
    cgroup: str | None = None
    mounted: bool = False
    # How it was last started (a restart on an existing data dir ignores both).
    initial_cluster: str = ""
    initial_state: str = "new"


class LabState(BaseModel):
    version: int = STATE_VERSION
    subject: str = SUBJECT
    run_dir: str
    started_at: str
    lab_id: str
    token: str
    block: str
    client_port: int
    peer_port: int
    flags: EtcdFlags
    tmpfs_mb: int
    load: bool
    load_rate: float
    members: list[MemberSpec]
    processes: dict[str, ProcessRecord] = {}
    chains: list[str] = Field(default_factory=list)  # iptables chains faults created (removed by down)
    cgroup_root: str | None = None
    # "process" (this module) or "docker" (subjects.etcd.docker_lab): the same layout, members as containers
    runtime: str = "process"
    docker_host: str | None = None
    engine_started: bool = False  # the docker lab started the local engine, and stops it at `down`
    containers: dict[str, ContainerRecord] = {}

    def member(self, name: str) -> MemberSpec:
        for spec in self.members:
            if spec.name == name:
                return spec
        raise LabError(f"no member {name!r} in this lab; members: {', '.join(m.name for m in self.members)}")


def parse_block(block: str) -> str:
    if not BLOCK.match(block) or any(int(x) > 255 for x in block.split(".")[1:]):
        raise LabError(f"--address-block must be three octets of a loopback address like 127.0.0 "
                       f"(member i gets BLOCK.i), got {block!r}")
    return block


def address_free(address: str, port: int) -> bool:
    """Nothing listens on address:port (nor on the wildcard address at that port), and it binds."""
    wanted = {socket.inet_aton(address)[::-1].hex().upper(), "00000000"}
    for table in ("/proc/net/tcp",):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if len(parts) > 3 and parts[3] == "0A":
                    addr, _, hexport = parts[1].partition(":")
                    if int(hexport, 16) == port and addr in wanted:
                        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def mounted(path: str | Path) -> bool:
    target = str(Path(path))
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if line.split()[4] == target:
                return True
    return False


def _proc_state(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.split()[1]
    return None


def _healthy(url: str) -> bool:
    """GET /health: false under any alarm, without a leader, or when a quorum read fails."""
    try:
        return call_sync(url, "/health", timeout=1.0, method="GET").get("health") == "true"
    except EtcdError:
        return False


def check_layout(members: int, block: str, client_port: int, peer_port: int, tmpfs_mb: int,
                 load_rate: float) -> str:
    """LabError for a layout no lab can run; returns the address block."""
    if not 1 <= members <= MAX_MEMBERS:
        raise LabError(f"--members must be between 1 and {MAX_MEMBERS}, got {members}")
    block = parse_block(block)
    for what, port in (("--client-port", client_port), ("--peer-port", peer_port)):
        if not 1024 <= port <= 65535:
            raise LabError(f"{what} must be between 1024 and 65535, got {port}")
    if client_port == peer_port:
        raise LabError(f"--client-port and --peer-port must differ (both {client_port})")
    if tmpfs_mb and tmpfs_mb < 160:
        raise LabError(f"--tmpfs-mb must be 0 (no tmpfs) or at least 160: etcd preallocates two 64 MB WAL "
                       f"files, got {tmpfs_mb}")
    if not 0 < load_rate <= 1000:
        raise LabError(f"--load-rate must be between 0 and 1000 operations per second, got {load_rate}")
    return block


def initial_cluster(members: list[MemberSpec]) -> str:
    return ",".join(f"{m.name}={m.peer_url}" for m in members)


class EtcdLab:
    PAUSED_DETAIL = "process is SIGSTOPped"
    stable_cgroups = True  # a member keeps its cgroup across restarts (partitions may match it)

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir).expanduser().resolve()

    def close(self) -> None:
        """Release what the lab object holds open (the Docker lab's engine connection)."""

    @classmethod
    def load(cls, run_dir: str | Path) -> EtcdLab:
        lab = cls(run_dir)
        lab.state  # noqa: B018 - raises LabError when no lab is up there
        return lab

    # -- state file and lock -------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.run_dir / STATE_FILE

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def loadgen_status_path(self) -> Path:
        return self.run_dir / LOADGEN_STATUS

    @contextlib.contextmanager
    def locked(self, create: bool = False) -> Iterator[None]:
        """One lab change at a time per run folder, across processes."""
        if create:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        elif not self.run_dir.is_dir():
            self.state  # noqa: B018 - the "no lab is up" error rather than creating a folder
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
            raise LabError(f"{self.state_path} is not an etcd lab state file this version understands: "
                           f"{e.errors()[0]['msg']}") from e

    def _write(self, state: LabState) -> None:
        lab_folder.write_whole(self.state_path, state.model_dump_json(indent=2))

    @property
    def state(self) -> LabState:
        state = self._read()
        if state is None:
            raise LabError(f"no {SUBJECT} lab is up in {self.run_dir} (start one with `operator-tui lab up {SUBJECT}`)")
        return state

    def is_up(self) -> bool:
        state = self._read()
        return state is not None and any(processes.is_live(p) for p in state.processes.values())

    # -- addresses -----------------------------------------------------------------------------

    def member_names(self) -> list[str]:
        return [m.name for m in self.state.members]

    def client_urls(self) -> dict[str, str]:
        return {m.name: m.client_url for m in self.state.members}

    def member(self, name: str) -> MemberSpec:
        return self.state.member(name)

    # -- up ------------------------------------------------------------------------------------

    def up(self, members: int = 3, block: str = DEFAULT_BLOCK, client_port: int = DEFAULT_CLIENT_PORT,
           peer_port: int = DEFAULT_PEER_PORT, load: bool = True, load_rate: float = 20.0,
           flags: EtcdFlags | None = None, tmpfs_mb: int = 192) -> LabState:
        """Start the members and the load generator; return once every member is healthy and they
        agree on one leader."""
        block = check_layout(members, block, client_port, peer_port, tmpfs_mb, load_rate)
        self._check_installed()
        with self.locked(create=True):
            old = self._read()
            if old is not None:
                self._refuse_running(old)
                self._cleanup(old)
            lab_id = uuid.uuid4().hex[:10]
            cgroup_root = self._cgroup_root(lab_id)
            specs = self._plan(members, block, client_port, peer_port, cgroup_root)
            state = LabState(run_dir=str(self.run_dir), started_at=datetime.now(UTC).isoformat(timespec="seconds"),
                             lab_id=lab_id, token=f"op-lab-{lab_id}", block=block, client_port=client_port,
                             peer_port=peer_port, flags=flags or EtcdFlags(), tmpfs_mb=tmpfs_mb, load=load,
                             load_rate=load_rate, members=specs, cgroup_root=cgroup_root, **self._runtime())
            shutil.rmtree(self.logs_dir, ignore_errors=True)
            self._write(state)
            try:
                self._start_members(state)
                self._wait_healthy(state, [s.name for s in specs])
                if load:
                    self._record(state, self._spawn_loadgen(state))
            except BaseException as e:
                self._undo_up(state)
                if isinstance(e, LabError | KeyboardInterrupt):
                    raise
                raise LabError(f"lab failed to start: {type(e).__name__}: {e}") from e
            return state

    # Steps of `up` a Docker lab does its own way.

    def _check_installed(self) -> None:
        if shutil.which("etcd") is None:
            raise LabError("etcd is not installed (Debian: apt-get install etcd-server etcd-client)")

    def _cgroup_root(self, lab_id: str) -> str | None:
        return f"operator-tui/etcd-{lab_id}" if netfault.cgroup_available() else None

    def _runtime(self) -> dict:
        return {"runtime": "process"}

    def _start_members(self, state: LabState) -> None:
        binary = shutil.which("etcd") or "etcd"
        for spec in state.members:
            self._prepare(state, spec, fresh=True)
        for spec in state.members:
            self._record(state, self._spawn(state, spec, binary))

    def _undo_up(self, state: LabState) -> None:
        self._stop_all(state)
        self._cleanup(state)

    def _refuse_running(self, old: LabState) -> None:
        if old.runtime != "process":
            raise LabError(f"the {old.runtime} {SUBJECT} lab's state is in {self.run_dir}: remove it first with "
                           f"`operator-tui lab down {SUBJECT}`")
        live = [f"{p.name} (pid {p.pid})" for p in old.processes.values() if processes.is_live(p)]
        if live:
            raise LabError(f"an {SUBJECT} lab is already up in {self.run_dir}: {', '.join(live)}; "
                           f"stop it with `operator-tui lab down {SUBJECT}`")

    def _plan(self, members: int, block: str, client_port: int, peer_port: int, cgroup_root: str | None
              ) -> list[MemberSpec]:
        """The members' specs, once their addresses are known to be free."""
        specs = [self._spec(i, block, client_port, peer_port, cgroup_root) for i in range(1, members + 1)]
        taken = [f"{s.address}:{port}" for s in specs for port in (client_port, peer_port)
                 if not address_free(s.address, port)]
        if taken:
            raise LabError(f"already in use: {', '.join(taken)}; choose others with --address-block, "
                           "--client-port or --peer-port")
        for s in specs:
            s.initial_cluster = initial_cluster(specs)
        return specs

    def _spec(self, i: int, block: str, client_port: int, peer_port: int, cgroup_root: str | None) -> MemberSpec:
        name = f"m{i}"
        address = f"{block}.{i}"
        folder = self.run_dir / "members" / name
        return MemberSpec(name=name, index=i, address=address, client_url=f"http://{address}:{client_port}",
                          peer_url=f"http://{address}:{peer_port}", folder=str(folder),
                          data_dir=str(folder / "data"), log=str(self.logs_dir / f"{name}.log"),
                          cgroup=f"{cgroup_root}/{name}" if cgroup_root else None)

    def _prepare(self, state: LabState, spec: MemberSpec, fresh: bool) -> None:
        """The member's folder (on its own tmpfs), cgroup, and an empty data dir when `fresh`."""
        folder = Path(spec.folder)
        folder.mkdir(parents=True, exist_ok=True)
        if state.tmpfs_mb and not mounted(folder):
            result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={state.tmpfs_mb}m,mode=0700", "tmpfs",
                                     str(folder)], capture_output=True, text=True, timeout=30)
            if result.returncode != 0:
                raise LabError(f"cannot mount a tmpfs for {spec.name} at {folder}: {result.stderr.strip()} "
                               "(run as root, or --tmpfs-mb 0 for no per-member disk)")
        spec.mounted = mounted(folder)
        if fresh:
            shutil.rmtree(spec.data_dir, ignore_errors=True)
        if spec.cgroup and state.cgroup_root:  # the lab's own cgroups (a container's are the engine's)
            netfault.cgroup_create(spec.cgroup)
        self._write(state)

    def _argv(self, state: LabState, spec: MemberSpec, binary: str) -> list[str]:
        f = state.flags
        argv = [
            binary, "--name", spec.name, "--data-dir", spec.data_dir,
            "--listen-client-urls", spec.client_url, "--advertise-client-urls", spec.client_url,
            "--listen-peer-urls", spec.peer_url, "--initial-advertise-peer-urls", spec.peer_url,
            "--initial-cluster", spec.initial_cluster, "--initial-cluster-token", state.token,
            "--initial-cluster-state", spec.initial_state,
            "--heartbeat-interval", str(f.heartbeat_ms), "--election-timeout", str(f.election_ms),
            "--quota-backend-bytes", str(f.quota_bytes),
            "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
        ]  # fmt: skip
        if f.pre_vote:
            argv.append("--pre-vote")
        if f.snapshot_count:
            argv += ["--snapshot-count", str(f.snapshot_count)]
        if spec.cgroup and state.cgroup_root:  # the lab's own cgroup (a container is put in one by the engine)
            # The shell joins the member's cgroup, then becomes etcd (same pid, so the record holds).
            procs = str(netfault.CGROUP_ROOT / spec.cgroup / "cgroup.procs")
            argv = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', procs, *argv]
        return argv

    def _spawn(self, state: LabState, spec: MemberSpec, binary: str) -> ProcessRecord:
        return processes.spawn(spec.name, self._argv(state, spec, binary), Path(spec.log))

    def _spawn_loadgen(self, state: LabState) -> ProcessRecord:
        argv = [sys.executable, "-m", "subjects.etcd.loadgen", "--status-file", str(self.loadgen_status_path),
                "--rate", str(state.load_rate)]
        for spec in state.members:
            argv += ["--endpoint", spec.client_url]
        rec = processes.spawn(LOADGEN_PROCESS, argv, self.logs_dir / "loadgen.log", env=processes.child_env())
        time.sleep(0.3)
        if not processes.is_live(rec):
            raise LabError(f"the load generator exited at once: {processes.log_tail(rec.log)}")
        return rec

    def _must_live(self, state: LabState, name: str) -> None:
        """LabError, with the end of its log, when the member has exited."""
        rec = state.processes[name]
        if not processes.is_live(rec):
            raise LabError(f"member {name} exited: {processes.log_tail(rec.log)}")

    def _record(self, state: LabState, rec: ProcessRecord) -> None:
        state.processes[rec.name] = rec
        self._write(state)

    def _wait_healthy(self, state: LabState, names: list[str]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        pending = list(names)
        while pending:
            for name in list(pending):
                self._must_live(state, name)
                if _healthy(state.member(name).client_url):
                    pending.remove(name)
            if pending and time.monotonic() > deadline:
                raise LabError(f"members not healthy within {START_TIMEOUT_S:.0f}s: {', '.join(pending)} (see "
                               f"{self.logs_dir})")
            if pending:
                time.sleep(0.1)
        while True:  # healthy members can still report the leader of a moment ago: wait for one view
            leaders = set()
            for name in names:
                with contextlib.suppress(EtcdError):
                    leaders.add(call_sync(state.member(name).client_url, "/v3/maintenance/status").get("leader"))
            if len(leaders) == 1 and None not in leaders:
                return
            if time.monotonic() > deadline:
                raise LabError(f"members did not agree on a leader within {START_TIMEOUT_S:.0f}s: {leaders}")
            time.sleep(0.1)

    # -- down ----------------------------------------------------------------------------------

    def down(self) -> dict:
        """Stop everything (load, fault helpers, followers, then the leader), remove the chains,
        mounts and cgroups, and prove nothing is left. LabError if something survived."""
        with self.locked():
            state = self.state
            stopped = self._stop_all(state)
            left = self._leftovers(state)
            removed = [] if left else self._cleanup(state)
            left = left or self._leftovers(state, after_cleanup=True)
            report = {
                "run_dir": str(self.run_dir),
                "stopped": stopped,
                "checked": {
                    "processes": [f"{r.name} (pid {r.pid})" for r in state.processes.values()],
                    "addresses": [f"{m.address}:{p}" for m in state.members for p in (state.client_port,
                                                                                      state.peer_port)],
                    "mounts": [m.folder for m in state.members if m.mounted],
                    "chains": list(state.chains),
                    "cgroups": [state.cgroup_root] if state.cgroup_root else [],
                },
                "left": left,
                "removed": removed,
                "logs": str(self.logs_dir),
            }
            if left:
                raise LabError("lab down left things behind: " + "; ".join(left) + f"; state kept in {self.state_path}")
            return report

    def _leader_name(self, state: LabState) -> str | None:
        ids: dict[str, str] = {}
        leader = None
        for spec in state.members:
            if self.process_state(spec.name, state) != processes.RUNNING:
                continue
            try:
                status = call_sync(spec.client_url, "/v3/maintenance/status", timeout=0.5)
            except EtcdError:
                continue
            ids[(status.get("header") or {}).get("member_id", "")] = spec.name
            leader = leader or status.get("leader")
        return ids.get(leader or "")

    def _stop_all(self, state: LabState) -> list[dict]:
        out = self._stop_helpers(state)
        for chain in state.chains:  # members part better when they can reach each other
            with contextlib.suppress(netfault.NetFaultError):
                netfault.Chain(chain).delete()
        return out + self._stop_members(state)

    def _stop_process(self, state: LabState, name: str, sig_first: signal.Signals | None = None) -> dict:
        rec = state.processes[name]
        try:
            if sig_first is not None and processes.send(rec, sig_first) and processes.wait_dead(rec, 5.0):
                processes.reap(rec.pid)
                outcome = f"stopped ({sig_first.name})"
            else:
                outcome = processes.stop(rec, STOP_GRACE_S)
        except RuntimeError as e:
            outcome = f"FAILED: {e}"
        return {"name": name, "pid": rec.pid, "outcome": outcome}

    def _stop_helpers(self, state: LabState) -> list[dict]:
        """The load generator and fault helpers (strace): they stop on SIGINT (strace detaches)."""
        helpers = [n for n in state.processes if n not in {m.name for m in state.members}]
        return [self._stop_process(state, name, signal.SIGINT) for name in helpers]

    def _stop_members(self, state: LabState) -> list[dict]:
        out: list[dict] = []

        def stop(name: str) -> dict:
            return self._stop_process(state, name)

        names = [m.name for m in state.members if m.name in state.processes]
        leader = self._leader_name(state)
        # Followers first, in parallel, then the leader: stopping all at once makes the leader try
        # to hand leadership to a follower that is itself stopping, which costs seconds.
        followers = [n for n in names if n != leader]
        with ThreadPoolExecutor(max_workers=max(1, len(followers))) as pool:
            out.extend(pool.map(stop, followers))
        if leader in names:
            out.append(stop(leader))
        return out

    def _leftovers(self, state: LabState, after_cleanup: bool = False) -> list[str]:
        left = [f"{r.name} (pid {r.pid}) still running" for r in state.processes.values() if processes.is_live(r)]
        deadline = time.monotonic() + 5.0
        while True:
            busy = [f"{m.address}:{p} still listening" for m in state.members
                    for p in (state.client_port, state.peer_port) if not address_free(m.address, p)]
            if not busy or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        left += busy
        if after_cleanup:
            left += [f"tmpfs still mounted at {m.folder}" for m in state.members if mounted(m.folder)]
            left += [f"iptables chain {c} still exists" for c in state.chains if not netfault.Chain(c).gone()]
            if state.cgroup_root and (netfault.CGROUP_ROOT / state.cgroup_root).exists():
                left.append(f"cgroup {state.cgroup_root} still exists")
        return left

    def _cleanup(self, state: LabState) -> list[str]:
        """Chains, mounts, cgroups, data and the state file of a lab whose processes are gone."""
        removed: list[str] = []
        for chain in list(state.chains):
            with contextlib.suppress(netfault.NetFaultError):
                netfault.Chain(chain).delete()
                removed.append(f"iptables chain {chain}")
        for spec in state.members:
            folder = Path(spec.folder)
            if mounted(folder):
                for _ in range(20):
                    if subprocess.run(["umount", str(folder)], capture_output=True, timeout=30).returncode == 0:
                        removed.append(f"tmpfs {folder}")
                        break
                    time.sleep(0.25)
        if state.cgroup_root and netfault.cgroup_remove(state.cgroup_root):
            removed.append(f"cgroup {state.cgroup_root}")
        for path in (self.run_dir / "members", self.run_dir / "attic"):
            if path.exists() and not any(mounted(p) for p in path.glob("*")):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(str(path))
        for name in (STATE_FILE, LOADGEN_STATUS, "state.tmp"):
            path = self.run_dir / name
            if path.exists():
                path.unlink()
                removed.append(str(path))
        return removed

    # -- status --------------------------------------------------------------------------------

    def status(self) -> dict:
        """Processes, and per member: process state, health, role, raft term and index, DB size."""
        state = self.state
        procs = self._process_rows(state)
        ids: dict[str, str] = {}
        rows = []
        for spec in state.members:
            pstate = self.process_state(spec.name, state) if self._started(state, spec.name) else "never started"
            row = {"name": spec.name, "client_url": spec.client_url, "process": pstate, "health": "unreachable",
                   "detail": None, "member_id": None, "leader_id": None, "raft_term": None, "raft_index": None,
                   "db_size": None, "free_bytes": self.free_bytes(spec.name)}
            if pstate == processes.PAUSED:
                row["health"], row["detail"] = "paused", self.PAUSED_DETAIL
            elif pstate == processes.RUNNING:
                try:
                    s = call_sync(spec.client_url, "/v3/maintenance/status")
                except EtcdError as e:
                    row["detail"] = e.message
                else:
                    row.update(member_id=(s.get("header") or {}).get("member_id"), leader_id=s.get("leader"),
                               raft_term=int(s.get("raftTerm") or 0), raft_index=int(s.get("raftIndex") or 0),
                               db_size=int(s.get("dbSize") or 0))
                    ids[row["member_id"] or ""] = spec.name
                    row["health"] = "healthy" if _healthy(spec.client_url) else "unhealthy"
                    row["detail"] = "; ".join(s.get("errors") or []) or None
            rows.append(row)
        for row in rows:
            row["role"] = ("leader" if row["leader_id"] and row["leader_id"] == row["member_id"]
                           else "follower" if row["leader_id"] else ("no leader" if row["member_id"] else "-"))
            row["leader"] = ids.get(row["leader_id"] or "", row["leader_id"])
        loadgen = None
        with contextlib.suppress(OSError, ValueError):
            loadgen = json.loads(self.loadgen_status_path.read_text())
        live = any(p["state"] in (processes.RUNNING, processes.PAUSED) for p in procs)
        return {"subject": SUBJECT, "run_dir": str(self.run_dir), "up": live, "started_at": state.started_at,
                "block": state.block, "client_port": state.client_port, "peer_port": state.peer_port,
                "flags": state.flags.model_dump(), "processes": procs, "members": rows, "chains": state.chains,
                "loadgen": loadgen}

    # -- one member ------------------------------------------------------------------------------

    def _process_rows(self, state: LabState) -> list[dict]:
        return [{"name": n, "pid": r.pid, "state": processes.process_state(r)} for n, r in state.processes.items()]

    def _started(self, state: LabState, name: str) -> bool:
        return name in state.processes

    def process(self, name: str) -> ProcessRecord | None:
        return self.state.processes.get(name)

    def process_state(self, name: str, state: LabState | None = None) -> str:
        """alive | paused (SIGSTOPped) | zombie | stopped. A process stopped by its tracer (``t``,
        under slow_disk's strace) is alive: it stops only for the length of a traced call."""
        rec = (state or self.state).processes.get(name)
        if rec is None:
            return processes.STOPPED
        now = processes.process_state(rec)
        if now == processes.PAUSED and _proc_state(rec.pid) == "t":
            return processes.RUNNING
        return now

    def process_states(self) -> dict[str, str]:
        state = self.state
        return {m.name: self.process_state(m.name, state) for m in state.members}

    def free_bytes(self, name: str) -> int | None:
        """Free space of the file system that holds the member's data."""
        try:
            st = os.statvfs(self.state.member(name).folder)
        except (OSError, LabError):
            return None
        return st.f_bavail * st.f_frsize

    def start_member(self, name: str, *, join_cluster: str | None = None, wait: bool = True) -> str:
        """Start a member that is not running, on its data dir. `join_cluster` (the full
        `--initial-cluster` of the running cluster, this member included) starts it as a newcomer
        on an empty data dir (`--initial-cluster-state existing`). Returns ``started`` or
        ``already running``; LabError when it exits at once or never answers."""
        binary = shutil.which("etcd")
        if binary is None:
            raise LabError("etcd is not installed (Debian: apt-get install etcd-server etcd-client)")
        with self.locked():
            state = self.state
            spec = state.member(name)
            rec = state.processes.get(name)
            if rec is not None and processes.is_live(rec):
                return "already running"
            if rec is not None:
                processes.reap(rec.pid)
            busy = self._ports_busy(state, spec)
            deadline = time.monotonic() + PORT_RELEASE_S
            while busy and time.monotonic() < deadline:  # a member killed just now: its sockets close after it
                time.sleep(0.02)
                busy = self._ports_busy(state, spec)
            if busy:
                raise LabError(f"cannot start {name}: {', '.join(busy)} in use")
            if join_cluster is not None:
                spec.initial_cluster, spec.initial_state = join_cluster, "existing"
            self._prepare(state, spec, fresh=join_cluster is not None)
            new = self._spawn(state, spec, binary)
            self._record(state, new)
        if wait:
            self._wait_answering(state, spec)
        return "started"

    @staticmethod
    def _ports_busy(state: LabState, spec: MemberSpec) -> list[str]:
        return [f"{spec.address}:{p}" for p in (state.client_port, state.peer_port) if not address_free(spec.address, p)]

    def _wait_answering(self, state: LabState, spec: MemberSpec) -> None:
        """Until the member listens on its client port (and still runs a moment later). It serves
        requests only once it has joined a quorum, which a member restarted alone after a quorum
        loss has not: its peers may still be starting."""
        deadline = time.monotonic() + START_TIMEOUT_S
        address = (spec.address, int(spec.client_url.rsplit(":", 1)[1]))
        while time.monotonic() < deadline:
            self._must_live(state, spec.name)
            with contextlib.suppress(OSError), socket.create_connection(address, timeout=0.5):
                break
            time.sleep(0.05)
        else:
            raise LabError(f"member {spec.name} did not listen on {spec.client_url} within {START_TIMEOUT_S:.0f}s")
        with contextlib.suppress(EtcdError):
            call_sync(spec.client_url, "/v3/maintenance/status", timeout=1.0)
        self._must_live(state, spec.name)

    def _member_rec(self, name: str) -> ProcessRecord:
        state = self.state
        state.member(name)
        rec = state.processes.get(name)
        if rec is None:
            raise LabError(f"member {name} was never started in this lab")
        return rec

    def stop_member(self, name: str) -> str:
        with self.locked():
            return processes.stop(self._member_rec(name), STOP_GRACE_S)

    def kill_member(self, name: str) -> dict:
        """SIGKILL; returns the process it killed ({"pid", "starttime"}), LabError if not running."""
        with self.locked():
            rec = self._member_rec(name)
            if processes.process_state(rec) not in (processes.RUNNING, processes.PAUSED):
                raise LabError(f"member {name} is not running (process {processes.process_state(rec)})")
            processes.send(rec, signal.SIGKILL)
            processes.wait_dead(rec, 5.0)
            processes.reap(rec.pid)
            return {"pid": rec.pid, "starttime": rec.starttime}

    def restart_member(self, name: str) -> str:
        """Stop the member (SIGTERM, SIGKILL after the grace), then start it on its data dir."""
        self.stop_member(name)
        self.start_member(name)
        return "restarted"

    def pause_undo(self, name: str) -> dict:
        """The undo step of pausing the member now: SIGCONT to that very process."""
        rec = self._member_rec(name)
        return {"op": "signal", "member": name, "pid": rec.pid, "starttime": rec.starttime, "signal": "SIGCONT"}

    def fill_disk(self, name: str, path: str) -> int:
        """Fill the member's own tmpfs with one file at `path` (allocated, not written: instant);
        returns its size."""
        st = os.statvfs(self.state.member(name).folder)
        size = st.f_bavail * st.f_frsize
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            while size > 0:
                try:
                    os.posix_fallocate(fd, 0, size)
                    break
                except OSError:
                    size -= 64 * 1024
        finally:
            os.close(fd)
        return size

    def signal_member(self, name: str, sig: signal.Signals) -> str:
        """SIGSTOP or SIGCONT, returning once it took effect: paused | resumed | not running."""
        with self.locked():
            try:
                sent = processes.signal_and_wait(self._member_rec(name), sig)
            except RuntimeError as e:
                raise LabError(str(e)) from e
        if not sent:
            return "not running"
        return "paused" if sig == signal.SIGSTOP else "resumed"

    def retire_data(self, name: str) -> str:
        """Move a stopped member's data dir out of the way (into RUN_DIR/attic); returns where."""
        with self.locked():
            state = self.state
            spec = state.member(name)
            if self.process_state(name, state) in (processes.RUNNING, processes.PAUSED):
                raise LabError(f"member {name} is running: stop it before moving its data")
            source = Path(spec.data_dir)
            attic = self.run_dir / "attic" / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}"
            if not source.exists():
                return ""
            attic.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(source), str(attic))
            return str(attic)

    def add_slot(self, name: str | None = None) -> MemberSpec:
        """A lab slot for a member that is not part of the lab yet (the next index), or the named one."""
        with self.locked():
            state = self.state
            if name is not None:
                for spec in state.members:
                    if spec.name == name:
                        return spec
            index = max(m.index for m in state.members) + 1
            if name is not None and name != f"m{index}":
                raise LabError(f"a new member must be named m{index} (the next free slot), not {name}")
            if index > MAX_MEMBERS:
                raise LabError(f"the lab holds at most {MAX_MEMBERS} members")
            spec = self._spec(index, state.block, state.client_port, state.peer_port, state.cgroup_root)
            state.members.append(spec)
            self._write(state)
            return spec

    # -- what faults leave behind -----------------------------------------------------------------

    def register_chain(self, chain: str) -> None:
        with self.locked():
            state = self.state
            if chain not in state.chains:
                state.chains.append(chain)
                self._write(state)

    def forget_chain(self, chain: str) -> None:
        with self.locked():
            state = self._read()
            if state is not None and chain in state.chains:
                state.chains.remove(chain)
                self._write(state)

    def register_process(self, rec: ProcessRecord) -> None:
        with self.locked():
            self._record(self.state, rec)

    def forget_process(self, name: str) -> None:
        with self.locked():
            state = self._read()
            if state is not None and name in state.processes and name not in {m.name for m in state.members}:
                del state.processes[name]
                self._write(state)


def open_lab(run_dir: str | Path) -> EtcdLab:
    """The lab object for the state file in `run_dir`: process or Docker, whichever started it (a
    folder with no lab gets the process lab, whose calls then say that no lab is up)."""
    lab = EtcdLab(run_dir)
    state = lab._read()
    if state is not None and state.runtime == "docker":
        from subjects.etcd.docker_lab import DockerEtcdLab

        return DockerEtcdLab(run_dir)
    return lab
