"""Containers as lab nodes: run one (host network, labelled), read its state, kill, stop, start,
restart, pause (the cgroup freezer) and unpause it, fill a disk inside it, remove a lab's containers.

A container is named by its id in lab state files; labels say which lab (its folder), which subject
and which node it is, so the engine's own listing finds every container of a lab
(`docker ps -a --filter label=org.operator-tui.lab-dir=DIR`).
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from containers.engine import LABEL

LABEL_LAB_DIR = f"{LABEL}.lab-dir"
LABEL_SUBJECT = f"{LABEL}.subject"
LABEL_NODE = f"{LABEL}.node"
RUNNING, PAUSED, EXITED, MISSING = "running", "paused", "exited", "missing"
WAIT_S = 20.0


class ContainerError(Exception):
    pass


class ContainerRecord(BaseModel):
    """One container a lab started, as written in its state file."""

    name: str  # the lab's name for it: "redis", "n2"
    id: str
    container_name: str
    image: str
    address: str  # the loopback address it listens on (host network)
    port: int | None = None


def container_name(lab_dir: str | Path, subject: str, name: str) -> str:
    """Engine-wide unique and stable per lab folder: two labs in two folders never collide."""
    digest = hashlib.sha256(str(Path(lab_dir).resolve()).encode()).hexdigest()[:8]
    return f"operator-tui-{subject}-{digest}-{name}"


def labels(lab_dir: str | Path, subject: str, name: str) -> dict[str, str]:
    return {LABEL_LAB_DIR: str(Path(lab_dir).resolve()), LABEL_SUBJECT: subject, LABEL_NODE: name}


def run(client: Any, *, image: str, name: str, command: list[str], labels: dict[str, str],
        tmpfs: dict[str, str] | None = None, environment: dict[str, str] | None = None,
        volumes: dict[str, dict[str, str]] | None = None) -> Any:
    """Start a detached container on the host network (no bridge: its ports are loopback ports).
    `init`: a small init as PID 1 forwards signals and reaps, as a real service manager would."""
    return client.containers.run(
        image, command, name=name, detach=True, network_mode="host", labels=labels, tmpfs=tmpfs or {},
        environment=environment or {}, volumes=volumes or {}, init=True, log_config={"type": "json-file", "config": {"max-size": "10m"}},
    )


def _get(client: Any, cid: str) -> Any | None:
    import docker

    try:
        return client.containers.get(cid)
    except docker.errors.NotFound:
        return None


def state(client: Any, cid: str) -> str:
    c = _get(client, cid)
    if c is None:
        return MISSING
    s = c.attrs["State"]
    if s.get("Paused"):
        return PAUSED
    return RUNNING if s.get("Running") else EXITED


def info(client: Any, cid: str) -> dict[str, Any]:
    """``{"id", "state", "pid", "started_ms", "exit_code", "oom_killed"}``; pid is the host pid of its
    init (0 when not running); started_ms when its current (or last) run began."""
    c = _get(client, cid)
    if c is None:
        return {"id": cid, "state": MISSING, "pid": 0, "started_ms": None, "exit_code": None, "oom_killed": False}
    s = c.attrs["State"]
    return {"id": c.id, "state": PAUSED if s.get("Paused") else RUNNING if s.get("Running") else EXITED,
            "pid": int(s.get("Pid") or 0), "started_ms": _ms(s.get("StartedAt")), "exit_code": s.get("ExitCode"),
            "oom_killed": bool(s.get("OOMKilled"))}


def _ms(stamp: str | None) -> int | None:
    """Docker's RFC 3339 time with nanoseconds -> epoch milliseconds."""
    if not stamp or stamp.startswith("0001-"):
        return None
    head, _, frac = stamp.rstrip("Z").partition(".")
    at = datetime.fromisoformat(head + "+00:00")
    return int(at.timestamp() * 1000) + int((frac + "000")[:3])


def wait_state(client: Any, cid: str, want: set[str], timeout_s: float = WAIT_S) -> str:
    deadline = time.monotonic() + timeout_s
    while (now := state(client, cid)) not in want:
        if time.monotonic() > deadline:
            raise ContainerError(f"container {cid[:12]} is {now}, not {'/'.join(sorted(want))}, after {timeout_s:.0f}s")
        time.sleep(0.05)
    return now


def _must(client: Any, cid: str) -> Any:
    c = _get(client, cid)
    if c is None:
        raise ContainerError(f"container {cid[:12]} does not exist (removed?)")
    return c


def kill(client: Any, cid: str) -> str:
    """SIGKILL the container (its whole process tree): ``killed`` or ``not running``."""
    if state(client, cid) not in (RUNNING, PAUSED):
        return "not running"
    _must(client, cid).kill()
    wait_state(client, cid, {EXITED, MISSING})
    return "killed"


def stop(client: Any, cid: str, grace_s: int = 5) -> str:
    """SIGTERM, SIGKILL after the grace (the engine does both): ``stopped`` or ``not running``."""
    if state(client, cid) not in (RUNNING, PAUSED):
        return "not running"
    c = _must(client, cid)
    if state(client, cid) == PAUSED:
        c.unpause()  # a frozen process cannot act on SIGTERM
    c.stop(timeout=grace_s)
    wait_state(client, cid, {EXITED, MISSING})
    return "stopped"


def start(client: Any, cid: str) -> str:
    now = state(client, cid)
    if now in (RUNNING, PAUSED):
        return "already running"
    _must(client, cid).start()
    wait_state(client, cid, {RUNNING})
    return "started"


def restart(client: Any, cid: str, grace_s: int = 5) -> str:
    c = _must(client, cid)
    if state(client, cid) == PAUSED:
        c.unpause()
    c.restart(timeout=grace_s)
    wait_state(client, cid, {RUNNING})
    return "restarted"


def pause(client: Any, cid: str) -> str:
    now = state(client, cid)
    if now != RUNNING:
        return "not running" if now != PAUSED else "already paused"
    _must(client, cid).pause()
    wait_state(client, cid, {PAUSED})
    return "paused"


def unpause(client: Any, cid: str) -> str:
    if state(client, cid) != PAUSED:
        return "not paused"
    _must(client, cid).unpause()
    wait_state(client, cid, {RUNNING})
    return "resumed"


def _exec(client: Any, cid: str, command: list[str]) -> tuple[int, str]:
    code, out = _must(client, cid).exec_run(command, demux=False)
    return code, (out or b"").decode("utf-8", "replace").strip()


def disk_usage(client: Any, cid: str, path: str) -> dict[str, int]:
    """``{"size_kb", "used_kb", "avail_kb"}`` of the filesystem at `path` inside the container."""
    code, out = _exec(client, cid, ["df", "-Pk", path])
    if code != 0:
        raise ContainerError(f"df {path} in {cid[:12]}: {out}")
    fields = out.splitlines()[-1].split()
    return {"size_kb": int(fields[1]), "used_kb": int(fields[2]), "avail_kb": int(fields[3])}


def fill_disk(client: Any, cid: str, target: str, leave_kb: int = 0) -> dict[str, Any]:
    """Fill the (size-limited tmpfs) filesystem holding `target` inside the container with that one
    new file, until the kernel says no space is left or about `leave_kb` KiB are. Returns ``{"file",
    "before", "after", "size_kb"}``."""
    if state(client, cid) != RUNNING:
        raise ContainerError(f"container {cid[:12]} is {state(client, cid)}: cannot fill its disk")
    path = target.rsplit("/", 1)[0] or "/"
    before = disk_usage(client, cid, path)
    if before["size_kb"] > 1024 * 1024:
        raise ContainerError(f"{path} in {cid[:12]} is {before['size_kb'] // 1024} MiB: refusing to fill more than "
                             "1 GiB (a full host disk is not this fault)")
    if holds(client, cid, target):
        raise ContainerError(f"{target} already exists in {cid[:12]}: a filler belongs to one fault")
    count = [f"count={max(0, before['avail_kb'] - leave_kb)}"] if leave_kb else []
    _exec(client, cid, ["dd", "if=/dev/zero", f"of={target}", "bs=1K", *count])  # may end with ENOSPC, by design
    after = disk_usage(client, cid, path)
    if after["avail_kb"] > leave_kb + 64:
        _exec(client, cid, ["rm", "-f", target])
        raise ContainerError(f"{path} in {cid[:12]} still has {after['avail_kb']} KiB free after filling")
    code, out = _exec(client, cid, ["stat", "-c", "%s", target])
    size_kb = int(out) // 1024 if code == 0 and out.isdigit() else before["avail_kb"] - after["avail_kb"]
    return {"file": target, "before": before, "after": after, "size_kb": size_kb}


def holds(client: Any, cid: str, target: str) -> bool:
    """Whether `target` exists inside the (running) container."""
    code, _ = _exec(client, cid, ["test", "-e", target])
    return code == 0


def unfill_disk(client: Any, cid: str, target: str) -> str:
    """Remove the filler file: ``removed``, or why there is nothing to remove."""
    now = state(client, cid)
    if now == MISSING:
        return "container gone"
    if now != RUNNING:
        # A stopped container's tmpfs is gone with it; a new start mounts an empty one.
        return f"container {now}: its tmpfs went with it"
    if not holds(client, cid, target):
        return "no filler file"
    code, out = _exec(client, cid, ["rm", "-f", target])
    if code != 0:
        raise ContainerError(f"rm {target} in {cid[:12]}: {out}")
    return "removed"


def of_lab(client: Any, lab_dir: str | Path) -> list[Any]:
    """Every container (running or not) labelled with this lab folder."""
    return client.containers.list(all=True, filters={"label": f"{LABEL_LAB_DIR}={Path(lab_dir).resolve()}"})


def remove_lab(client: Any, lab_dir: str | Path, logs_dir: Path | None = None) -> list[dict[str, str]]:
    """Save each container's log (when `logs_dir`), then remove it by force. Returns what was removed."""
    removed = []
    for c in of_lab(client, lab_dir):
        node = (c.labels or {}).get(LABEL_NODE, c.name)
        outcome = _remove(c, logs_dir / f"{node}.log" if logs_dir is not None else None)
        removed.append({"name": node, "id": c.short_id, "outcome": outcome})
    return removed


def remove(client: Any, cid: str, log_file: Path | None = None) -> str:
    """One container: its log saved to `log_file` (when given), then removed by force."""
    c = _get(client, cid)
    return "already gone" if c is None else _remove(c, log_file)


def _remove(c: Any, log_file: Path | None) -> str:
    import docker

    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        try:
            log_file.write_bytes(c.logs(stdout=True, stderr=True))
        except docker.errors.APIError:
            pass  # a container that never started has no log; removing it matters more
    try:
        c.remove(force=True, v=True)
    except docker.errors.NotFound:
        return "already gone"
    return "removed"
