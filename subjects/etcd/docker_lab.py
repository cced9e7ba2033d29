"""The etcd lab as containers on a Docker engine (`operator-tui lab up etcd --docker`).

The same layout as the process lab (`subjects.etcd.lab`) and the same state file (with
``runtime: docker`` and a container record per member), so the subject, the faults and the actions
read it exactly as they read the process lab. Each member is a container of `operator-tui/etcd:3.4`
on the host network, listening on an address of its own on loopback (nothing leaves 127.0.0.0/8)::

    member m<i>     container operator-tui-etcd-<lab hash>-m<i>, client http://BLOCK.i:CLIENT_PORT,
                    peer http://BLOCK.i:PEER_PORT; its data on the member's own tmpfs (mounted on the
                    host in RUN_DIR/members/m<i>, bound into the container at the same path, so the
                    data outlives a stopped container and a restart finds it)
    load generator  a process of the lab (as in the process lab), status in RUN_DIR/loadgen.json

Labels name the lab folder, the subject and the member, so `docker ps --filter
label=org.operator-tui.lab-dir=DIR` lists a lab's containers; `down` removes them all and checks
that the engine lists none. A member's cgroup (where iptables matches its outgoing packets for a
partition) is the one the engine made for its container, read from /proc when it starts. The
engine: DOCKER_HOST, else the project's local engine (`scripts/dockerd.sh`), started by `up` when it
does not run and stopped again by `down`.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from containers import engine, images
from containers import nodes as ctr
from containers.nodes import ContainerRecord
from subjects import processes
from subjects.etcd.lab import (
    DEFAULT_CLIENT_PORT,
    DEFAULT_PEER_PORT,
    SUBJECT,
    EtcdFlags,
    EtcdLab,
    LabError,
    LabState,
    MemberSpec,
    address_free,
)

DEFAULT_DOCKER_BLOCK = "127.18.1"  # 127.18.x: the Docker labs (the rate limiter's is 127.18.0)
IMAGE = "etcd"
STOP_GRACE_S = 10  # a leader takes about 7 s to exit on SIGTERM
# The container states as the lab names process states.
STATES = {ctr.RUNNING: processes.RUNNING, ctr.PAUSED: processes.PAUSED,
          ctr.EXITED: processes.STOPPED, ctr.MISSING: processes.STOPPED}


def container_cgroup(pid: int) -> str | None:
    """The cgroup (v2 hierarchy) the process runs in, relative to its root: runc puts a container
    there too on hosts whose controllers are on cgroup v1 (hybrid mode), as `docker/<id>`."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                path = line[3:].strip("/")
                return path or None
    return None


class DockerEtcdLab(EtcdLab):
    PAUSED_DETAIL = "container is paused (cgroup freezer)"
    stable_cgroups = False  # a container's cgroup is made anew each time it starts

    def __init__(self, run_dir: str | Path) -> None:
        super().__init__(run_dir)
        self._engine: Any = None
        self._engine_lock = threading.Lock()
        self._ensured: tuple[str, bool] | None = None  # (address, started here) once `up` made sure of the engine

    # -- the engine ----------------------------------------------------------------------------

    def _client(self, state: LabState | None = None) -> Any:
        """One client per lab object (the observer asks for the members' states every second)."""
        with self._engine_lock:
            if self._engine is None:
                state = state or self.state
                try:
                    self._engine = engine.connect(state.docker_host)
                except engine.EngineError as e:
                    raise LabError(str(e)) from e
            return self._engine

    def close(self) -> None:
        with self._engine_lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None

    def _container(self, state: LabState, name: str) -> ContainerRecord:
        if name not in state.containers:
            state.member(name)  # an unknown member says so
            raise LabError(f"member {name} was never started in this lab")
        return state.containers[name]

    @contextlib.contextmanager
    def _engine_errors(self, state: LabState, what: str) -> Iterator[None]:
        """Engine and container failures as LabError; a broken connection is made again next time."""
        import docker
        import requests

        try:
            yield
        except ctr.ContainerError as e:
            raise LabError(f"{what}: {e}") from e
        except (docker.errors.DockerException, requests.RequestException) as e:
            self.close()
            raise LabError(f"{what}: the Docker engine at {state.docker_host} failed: {e}") from e

    def _engine_call(self, name: str, action: Any, state: LabState | None = None) -> Any:
        state = state or self.state
        rec = self._container(state, name)
        with self._engine_errors(state, name):
            return action(self._client(state), rec.id)

    def _container_states(self, state: LabState) -> dict[str, str]:
        """Every member's container state from one listing of the lab's containers (sparse: no
        inspection of each)."""
        client = self._client(state)
        with self._engine_errors(state, "listing the lab's containers"):
            listed = client.containers.list(all=True, sparse=True,
                                            filters={"label": f"{ctr.LABEL_LAB_DIR}={self.run_dir}"})
        status = {c.id: c.status for c in listed}
        return {name: {"running": ctr.RUNNING, "paused": ctr.PAUSED, None: ctr.MISSING}.get(
                    status.get(rec.id), ctr.EXITED) for name, rec in state.containers.items()}

    def is_up(self) -> bool:
        state = self._read()
        if state is None or state.runtime != "docker":
            return False
        try:
            states = self._container_states(state)
        except LabError:
            return False
        return any(s in (ctr.RUNNING, ctr.PAUSED) for s in states.values())

    # -- up ------------------------------------------------------------------------------------

    def up(self, members: int = 3, block: str = DEFAULT_DOCKER_BLOCK, client_port: int = DEFAULT_CLIENT_PORT,
           peer_port: int = DEFAULT_PEER_PORT, load: bool = True, load_rate: float = 20.0,
           flags: EtcdFlags | None = None, tmpfs_mb: int = 192) -> LabState:
        """Start the members as containers and the load generator; return once every member is
        healthy and they agree on one leader."""
        try:
            return super().up(members, block, client_port, peer_port, load, load_rate, flags, tmpfs_mb)
        except BaseException:
            if self._ensured is not None:
                with contextlib.suppress(Exception):
                    self._stop_engine(*self._ensured)
            raise

    def _check_installed(self) -> None:
        """An engine answers: DOCKER_HOST's, or the local one (started when it does not run)."""
        try:
            self._ensured = engine.ensure()
        except engine.EngineError as e:
            raise LabError(str(e)) from e

    def _cgroup_root(self, lab_id: str) -> str | None:
        return None  # each container's cgroup is the engine's

    def _runtime(self) -> dict:
        assert self._ensured is not None
        address, started = self._ensured
        return {"runtime": "docker", "docker_host": address, "engine_started": started}

    def _start_members(self, state: LabState) -> None:
        client = self._client(state)
        self._check_image(client)
        ctr.remove_lab(client, self.run_dir)  # left by a crashed `up` here, they would hold the names
        for spec in state.members:
            self._prepare(state, spec, fresh=True)
        for spec in state.members:
            self._run_member(state, spec)

    def _undo_up(self, state: LabState) -> None:
        for undo in (self._stop_all, self._cleanup):  # then `up` stops the engine it started
            with contextlib.suppress(Exception):
                undo(state)

    def _refuse_running(self, old: LabState) -> None:
        if old.runtime != "docker":
            super()._refuse_running(old)
            return
        if self.is_up():
            raise LabError(f"an {SUBJECT} lab is already up in {self.run_dir}; stop it with "
                           f"`operator-tui lab down {SUBJECT}`")
        self._remove_containers(old)

    def _check_image(self, client: Any) -> None:
        """Build the etcd image when it is missing or stale, saying so on stderr."""
        stale = images.stale(client, [IMAGE])
        if not stale:
            return
        print(f"building {images.IMAGES[IMAGE].tag} (missing, or older than this checkout)", file=sys.stderr,
              flush=True)
        try:
            images.build(client, stale, progress=lambda line: print(line, file=sys.stderr, flush=True))
        except images.BuildError as e:
            raise LabError(f"could not build the lab's image: {e}") from e

    def _run_member(self, state: LabState, spec: MemberSpec) -> ContainerRecord:
        """A new container for the member (its folder bound at the same path), recorded with its cgroup."""
        client = self._client(state)
        cname = ctr.container_name(self.run_dir, SUBJECT, spec.name)
        with contextlib.suppress(Exception):
            client.containers.get(cname).remove(force=True)  # the member's previous container, if any
        c = ctr.run(client, image=images.IMAGES[IMAGE].tag, name=cname, command=self._argv(state, spec, "etcd"),
                    labels=ctr.labels(self.run_dir, SUBJECT, spec.name),
                    volumes={spec.folder: {"bind": spec.folder, "mode": "rw"}})
        rec = ContainerRecord(name=spec.name, id=c.id, container_name=cname, image=images.IMAGES[IMAGE].tag,
                              address=spec.address, port=state.client_port)
        state.containers[spec.name] = rec
        self._write(state)
        self._note_cgroup(state, spec)
        return rec

    def _note_cgroup(self, state: LabState, spec: MemberSpec) -> None:
        """Record the cgroup of the member's running container (partitions match it)."""
        info = ctr.info(self._client(state), state.containers[spec.name].id)
        cgroup = container_cgroup(info["pid"]) if info["pid"] else None
        if cgroup != spec.cgroup:
            spec.cgroup = cgroup
            self._write(state)

    def _must_live(self, state: LabState, name: str) -> None:
        if self.process_state(name, state) not in (processes.RUNNING, processes.PAUSED):
            raise LabError(f"member {name} exited: {self._log_tail(state, name)}")

    def _log_tail(self, state: LabState, name: str, lines: int = 3) -> str:
        try:
            c = self._client(state).containers.get(state.containers[name].id)
            text = c.logs(tail=lines).decode("utf-8", "replace").strip()
        except Exception as e:
            return f"(no log: {e})"
        return text.replace("\n", " | ") or "(empty log)"

    # -- down ----------------------------------------------------------------------------------

    def _remove_containers(self, state: LabState) -> list[dict]:
        """Every container labelled with this lab (its log saved first), removed by force."""
        removed = ctr.remove_lab(self._client(state), self.run_dir, self.logs_dir)
        return [{"name": r["name"], "pid": r["id"], "outcome": f"container {r['outcome']}"} for r in removed]

    def _stop_members(self, state: LabState) -> list[dict]:
        # Removed by force (SIGKILL): the data goes with the lab, so a graceful leader hand-off buys nothing.
        return self._remove_containers(state)

    def _stop_engine(self, address: str | None, started: bool) -> str | None:
        """Stop the local engine when `up` started it and no container at all is left on it."""
        if not started or not engine.is_local(address or ""):
            return None
        self.close()
        try:
            client = engine.connect(address)
            try:
                if client.containers.list(all=True):
                    return None
            finally:
                client.close()
            return engine.stop_local()
        except engine.EngineError as e:
            raise LabError(f"containers removed, but the local engine did not stop: {e}") from e

    def down(self) -> dict:
        """Remove every container (logs saved), stop the load generator and fault helpers, delete
        the chains, unmount the members' disks, check that the engine lists no container of the lab
        and that nothing is left; stop the local engine if `up` started it."""
        with self.locked():
            state = self.state
            stopped = self._stop_all(state)
            left = [f"container {c.name} still exists" for c in ctr.of_lab(self._client(state), self.run_dir)]
            left += self._leftovers(state)
            removed = [] if left else self._cleanup(state)
            left = left or self._leftovers(state, after_cleanup=True)
            if left:
                raise LabError("lab down left things behind: " + "; ".join(left) + f"; state kept in {self.state_path}")
            engine_outcome = self._stop_engine(state.docker_host, state.engine_started)
            return {
                "run_dir": str(self.run_dir), "runtime": "docker", "docker_host": state.docker_host,
                "stopped": stopped, "engine": engine_outcome,
                "checked": {
                    "containers": [f"{r.name} ({r.id[:12]})" for r in state.containers.values()],
                    "processes": [f"{r.name} (pid {r.pid})" for r in state.processes.values()],
                    "addresses": [f"{m.address}:{p}" for m in state.members
                                  for p in (state.client_port, state.peer_port)],
                    "mounts": [m.folder for m in state.members if m.mounted],
                    "chains": list(state.chains),
                    "cgroups": [],
                },
                "left": [], "removed": removed, "logs": str(self.logs_dir),
            }

    # -- status --------------------------------------------------------------------------------

    def _process_rows(self, state: LabState) -> list[dict]:
        rows = super()._process_rows(state)
        client = self._client(state)
        for name, rec in state.containers.items():
            got = ctr.info(client, rec.id)
            rows.append({"name": name, "pid": got["pid"], "state": STATES[got["state"]], "container": rec.id[:12]})
        return rows

    def _started(self, state: LabState, name: str) -> bool:
        return name in state.containers

    def status(self) -> dict:
        out = super().status()
        state = self.state
        containers = {r["name"]: r.get("container") for r in out["processes"]}
        for row in out["members"]:
            row["container"] = containers.get(row["name"])
        out.update(runtime="docker", docker_host=state.docker_host)
        return out

    # -- one member ------------------------------------------------------------------------------

    def process_state(self, name: str, state: LabState | None = None) -> str:
        """The member's container as a process state: alive | paused (frozen) | stopped."""
        state = state or self.state
        if name not in state.containers:
            return processes.STOPPED
        return STATES[self._engine_call(name, ctr.state, state)]

    def process_states(self) -> dict[str, str]:
        state = self.state
        states = self._container_states(state)
        return {m.name: STATES[states.get(m.name, ctr.MISSING)] for m in state.members}

    def process(self, name: str) -> Any:
        raise LabError("the Docker lab runs its members as containers: slow_disk and other process-level faults "
                       "need the process lab (`operator-tui lab up etcd`)")

    def container_info(self, name: str) -> dict:
        """``{"id", "state", "pid", "started_ms", ...}`` of the member's container."""
        return self._engine_call(name, ctr.info)

    def start_member(self, name: str, *, join_cluster: str | None = None, wait: bool = True) -> str:
        """Start the member's container on its data dir (`docker start`), or, with `join_cluster`,
        a new container that joins the running cluster on an empty data dir."""
        with self.locked():
            state = self.state
            spec = state.member(name)
            if name in state.containers and self.process_state(name, state) != processes.STOPPED:
                return "already running"
            if join_cluster is not None or name not in state.containers:
                if join_cluster is not None:
                    spec.initial_cluster, spec.initial_state = join_cluster, "existing"
                self._prepare(state, spec, fresh=join_cluster is not None)
                self._run_member(state, spec)
            else:
                busy = [f"{spec.address}:{p}" for p in (state.client_port, state.peer_port)
                        if not address_free(spec.address, p)]
                if busy:
                    raise LabError(f"cannot start {name}: {', '.join(busy)} in use")
                self._engine_call(name, ctr.start, state)
                self._note_cgroup(state, spec)
        if wait:
            self._wait_answering(state, spec)
        return "started"

    def stop_member(self, name: str) -> str:
        with self.locked():
            return self._engine_call(name, lambda c, cid: ctr.stop(c, cid, STOP_GRACE_S))

    def restart_member(self, name: str) -> str:
        """`docker restart` (SIGTERM, SIGKILL after the grace, start), then wait until it listens."""
        with self.locked():
            state = self.state
            self._engine_call(name, lambda c, cid: ctr.restart(c, cid, STOP_GRACE_S), state)
            self._note_cgroup(state, state.member(name))
        self._wait_answering(state, state.member(name))
        return "restarted"

    def kill_member(self, name: str) -> dict:
        """`docker kill` (SIGKILL to the container); returns the container it killed."""
        with self.locked():
            state = self.state
            before = self._engine_call(name, ctr.info, state)
            if before["state"] not in (ctr.RUNNING, ctr.PAUSED):
                raise LabError(f"member {name} is not running (container {before['state']})")
            self._engine_call(name, ctr.kill, state)
            return {"container": before["id"], "pid": before["pid"]}

    def signal_member(self, name: str, sig: signal.Signals) -> str:
        """SIGSTOP freezes the container (`docker pause`), SIGCONT thaws it: paused | resumed | not running."""
        with self.locked():
            if sig == signal.SIGSTOP:
                outcome = self._engine_call(name, ctr.pause)
                return "paused" if outcome in ("paused", "already paused") else outcome
            state = self.state
            if self._engine_call(name, ctr.unpause, state) == "resumed":
                return "resumed"
            # Not paused: as SIGCONT to a running process, nothing to do; or not running at all.
            return "resumed" if self._engine_call(name, ctr.state, state) == ctr.RUNNING else "not running"

    def pause_undo(self, name: str) -> dict:
        rec = self._container(self.state, name)
        return {"op": "unpause", "member": name, "container": rec.id}

    def unpause(self, name: str, container: str) -> tuple[str, str]:
        """Thaw the member's container if it is still the one that was frozen."""
        with self.locked():
            state = self.state
            rec = state.containers.get(name)
            if rec is None or rec.id != container:
                return "nothing", f"{name}'s container {container[:12]} no longer exists; nothing to thaw"
            outcome = self._engine_call(name, ctr.unpause, state)
            now = self._engine_call(name, ctr.state, state)
        if outcome != "resumed":
            return "nothing", f"{name}'s container {container[:12]} was {outcome} (now {now})"
        if now != ctr.RUNNING:
            raise LabError(f"{name}'s container {container[:12]} is {now} after unpause")
        return "undone", f"unpaused {name}'s container {container[:12]}"

    def fill_disk(self, name: str, path: str) -> int:
        """Fill the member's own (size-limited) tmpfs from inside its container with one file at
        `path`, until the kernel says no space is left; returns the file's size."""
        spec = self.state.member(name)
        if not path.startswith(spec.folder.rstrip("/") + "/"):
            raise LabError(f"{path} is not on {name}'s disk ({spec.folder})")

        def fill(client: Any, cid: str) -> int:
            c = client.containers.get(cid)
            # dd ends with ENOSPC, by design; then the file's size says what it took.
            c.exec_run(["dd", "if=/dev/zero", f"of={path}", "bs=1M"])
            code, out = c.exec_run(["stat", "-c", "%s", path])
            if code != 0:
                raise ctr.ContainerError(f"the filler {path} is missing after dd: {out.decode(errors='replace')}")
            return int(out.decode().strip())

        return self._engine_call(name, fill)

