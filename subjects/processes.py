"""Detached processes on this machine: start, inspect, signal, stop; and loopback ports.

A process is identified by its pid AND its start time (``/proc/PID/stat`` field 22), so a pid
reused by an unrelated process after ours died is never signalled. States come from
``/proc/PID/status`` because a dead process can linger as a zombie while ``kill -0`` still works.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import time
from pathlib import Path

from pydantic import BaseModel

from subjects.evaluation import proc_start_time, proc_state

LOCALHOST = "127.0.0.1"
ANY_ADDRESS = "0.0.0.0"
# Joins the cgroup whose cgroup.procs is $0, then becomes the real command: same pid, same start
# time, and not one instruction of the command runs outside the cgroup.
CGROUP_WRAPPER = 'echo $$ > "$0" && exec "$@"'

# Process states as reported by `process_state`.
# A process that exited and was reaped is "stopped"; SIGSTOPped is "paused".
RUNNING, PAUSED, ZOMBIE, STOPPED = "alive", "paused", "zombie", "stopped"


class ProcessRecord(BaseModel):
    """One process a lab started, as written in its state file."""

    name: str
    pid: int
    starttime: int  # clock ticks after boot; with pid, the process's identity
    argv: list[str]
    log: str
    port: int | None = None  # the port it listens on, if any (the proxy has several: see the lab)
    host: str = LOCALHOST  # the address it listens on (and connects from)
    cgroup: str | None = None  # its cgroup v2 path (subjects.netfault), when it runs in one


def status_letter(pid: int) -> str | None:
    """The one-letter state in /proc/PID/status (R, S, D, T, t, Z, ...), None without such a process."""
    return proc_state(pid)


def reap(pid: int) -> None:
    """Collect a dead child of ours, if it is one (others are left to their parent or init)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def process_state(rec: ProcessRecord) -> str:
    """``alive``, ``paused`` (SIGSTOPped), ``zombie`` (dead, not yet reaped) or ``stopped`` (exited)."""
    reap(rec.pid)
    if proc_start_time(rec.pid) != rec.starttime:
        return STOPPED
    state = status_letter(rec.pid)
    if state is None or state in ("X", "x"):
        return STOPPED
    if state == "Z":
        return ZOMBIE
    if state in ("T", "t"):
        return PAUSED
    return RUNNING


def is_live(rec: ProcessRecord) -> bool:
    return process_state(rec) in (RUNNING, PAUSED)


def spawn(
    name: str,
    argv: list[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    port: int | None = None,
    host: str = LOCALHOST,
    cgroup: str | None = None,
) -> ProcessRecord:
    """Start `argv` detached (own session, stdin /dev/null, stdout+stderr appended to `log_path`),
    inside the cgroup v2 `cgroup` (a path under subjects.netfault.CGROUP_ROOT) when one is given.

    posix_spawn rather than subprocess.Popen: the lab keeps only the pid, and a Popen object
    dropped while its child runs warns and tries to reap behind our back.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = argv
    if cgroup is not None:
        from subjects.netfault import CGROUP_ROOT

        command = ["/bin/sh", "-c", CGROUP_WRAPPER, str(CGROUP_ROOT / cgroup / "cgroup.procs"), *argv]
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    pid = os.posix_spawnp(
        command[0], command, dict(env if env is not None else os.environ), file_actions=actions, setsid=True
    )
    starttime = None
    for _ in range(100):  # /proc/PID appears with the process; bounded in case it died at once
        starttime = proc_start_time(pid)
        if starttime is not None:
            break
        time.sleep(0.01)
    return ProcessRecord(
        name=name, pid=pid, starttime=starttime or -1, argv=argv, log=str(log_path), port=port, host=host,
        cgroup=cgroup,
    )


def send(rec: ProcessRecord, sig: signal.Signals) -> bool:
    """Signal the process if it is still the one we started; False when it is gone."""
    if process_state(rec) in (STOPPED, ZOMBIE):
        return False
    try:
        os.kill(rec.pid, sig)
    except ProcessLookupError:
        return False
    return True


def signal_and_wait(rec: ProcessRecord, sig: signal.Signals, timeout_s: float = 5.0) -> bool:
    """SIGSTOP/SIGCONT and wait until /proc shows the effect (signals are delivered asynchronously).

    False when the process is not running (or died meanwhile); RuntimeError if nothing happened.
    """
    if not send(rec, sig):
        return False
    want = PAUSED if sig == signal.SIGSTOP else RUNNING
    deadline = time.monotonic() + timeout_s
    while (state := process_state(rec)) != want:
        if state in (STOPPED, ZOMBIE):
            return False
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"{rec.name} (pid {rec.pid}) did not react to {sig.name} within {timeout_s:.0f}s"
            )
        time.sleep(0.01)
    return True


def wait_dead(rec: ProcessRecord, timeout_s: float) -> bool:
    """Wait until the process is gone or a zombie; True when it is."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process_state(rec) in (STOPPED, ZOMBIE):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def stop(rec: ProcessRecord, grace_s: float = 5.0) -> str:
    """SIGCONT (a stopped process cannot act on SIGTERM), SIGTERM, then SIGKILL after `grace_s`.

    Returns what it took: ``not running``, ``terminated`` or ``killed``; raises RuntimeError
    when even SIGKILL did not end it.
    """
    if process_state(rec) in (STOPPED, ZOMBIE):
        reap(rec.pid)
        return "not running"
    send(rec, signal.SIGCONT)
    send(rec, signal.SIGTERM)
    if wait_dead(rec, grace_s):
        reap(rec.pid)
        return "terminated"
    send(rec, signal.SIGKILL)
    if wait_dead(rec, 5.0):
        reap(rec.pid)
        return "killed"
    raise RuntimeError(f"{rec.name} (pid {rec.pid}) survived SIGKILL")


PROJECT_ROOT = Path(__file__).resolve().parents[2]


def child_env() -> dict[str, str]:
    """The environment of a child that runs this checkout's packages (even when they are not
    installed in its Python), with unbuffered output for its log."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def log_tail(path: str | Path, lines: int = 5) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


# -- ports ---------------------------------------------------------------------------------------


def _address(hex_ip: str) -> str:
    """An address as /proc/net/tcp writes it (IPv4: 8 hex digits, little-endian)."""
    if len(hex_ip) == 8:
        return socket.inet_ntop(socket.AF_INET, bytes.fromhex(hex_ip)[::-1])
    words = bytes.fromhex(hex_ip)
    return socket.inet_ntop(socket.AF_INET6, b"".join(words[i : i + 4][::-1] for i in range(0, 16, 4)))


def listening() -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket on this machine, from /proc/net."""
    found: set[tuple[str, int]] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 3 and parts[3] == "0A":  # TCP_LISTEN
                address, port = parts[1].rsplit(":", 1)
                found.add((_address(address), int(port, 16)))
    return found


def listening_ports() -> set[int]:
    """TCP ports with a listening socket on this machine (any address)."""
    return {port for _, port in listening()}


def is_listening(host: str, port: int, table: set[tuple[str, int]] | None = None) -> bool:
    """Whether something listens on host:port itself or on every address (0.0.0.0 / ::)."""
    table = listening() if table is None else table
    return any((h, port) in table for h in (host, ANY_ADDRESS, "::"))


def port_free(port: int, host: str = LOCALHOST) -> bool:
    """True when nothing listens on host:`port` (or on every address) and it can be bound.

    Every 127.x.y.z address is local and separate: two labs on different addresses can use the
    same port numbers."""
    if is_listening(host, port):
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# Below the kernel's ephemeral range (32768-60999): a port the kernel hands out for a client
# connection or a bind to port 0 elsewhere can no longer be taken between our check and the
# server's own bind.
FREE_PORT_RANGE = (20_000, 32_000)


def free_port(rng: random.Random | None = None) -> int:
    """A free port in FREE_PORT_RANGE, chosen at random."""
    rng = rng or random.Random()
    for _ in range(500):
        port = rng.randrange(*FREE_PORT_RANGE)
        if port_free(port):
            return port
    raise RuntimeError("no free port found")


def wait_port(
    port: int, timeout_s: float, alive: ProcessRecord | None = None, host: str = LOCALHOST
) -> bool:
    """Wait until host:`port` accepts connections; stop early if `alive` died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        if alive is not None and not is_live(alive):
            return False
        time.sleep(0.05)
    return False
