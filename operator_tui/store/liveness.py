"""Is the process behind a run still alive?

A PID alone cannot tell: PIDs are reused, a container's operator is PID 1 every time it starts,
and a process in another PID namespace has a PID that means nothing here. So a live run holds an
exclusive `flock` on its own lock file beside the store (`<store>.runs/<run id>.lock`) for as long
as its process lives. The kernel drops the lock the moment the process dies (SIGKILL included),
whatever PID namespace or container it ran in, so another process learns that it died by taking
the lock. The store's filesystem must support locks anyway: SQLite itself depends on them.

Runs recorded before lock files existed (or whose lock file was removed by hand) fall back to
what the process left behind: its PID, its start time (`/proc/PID/stat` field 22) and its PID
namespace and boot id, which identify it only when it ran in our own PID namespace.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    start: int | None  # clock ticks after boot (/proc/PID/stat field 22)
    pid_ns: str | None  # "pid:[4026531836]"
    boot_id: str | None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def start_time(pid: int | str = "self") -> int | None:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks after boot."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    try:
        # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
        return int(text.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def this_process() -> ProcessIdentity:
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = None
    return ProcessIdentity(os.getpid(), start_time(), pid_ns, _read("/proc/sys/kernel/random/boot_id"))


def process_running(pid: int) -> bool:
    """A process with this PID exists here and is not a zombie (kill -0 succeeds on zombies)."""
    text = _read(f"/proc/{pid}/status")
    if text is None:
        return False
    for line in text.splitlines():
        if line.startswith("State:"):
            return "Z" not in line.split()[1]
    return True


def same_process_alive(pid: int | None, start: int | None, pid_ns: str | None, boot_id: str | None) -> bool | None:
    """Whether the process recorded as (pid, start, namespace, boot) still runs; None when it ran in
    another PID namespace or boot, where its PID tells nothing here."""
    if pid is None:
        return False
    me = this_process()
    if pid == me.pid and start is None:
        return False  # recorded without a start time by a process that had our PID: not us (we are asking)
    if boot_id is not None and me.boot_id is not None and boot_id != me.boot_id:
        return False  # the machine rebooted since: every process of that boot is gone
    if pid_ns is not None and me.pid_ns is not None and pid_ns != me.pid_ns:
        return None
    if not process_running(pid):
        return False
    return start is None or start_time(pid) == start


def lock_dir(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".runs")


def lock_path(db_path: Path, run_id: int) -> Path:
    return lock_dir(db_path) / f"{run_id}.lock"


class RunLock:
    """The lock a live run holds on its file; released (and the file removed) when the run ends."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd = fd

    @classmethod
    def take(cls, path: Path) -> RunLock:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        return cls(path, fd)

    def rename(self, path: Path) -> None:
        os.replace(self.path, path)  # the lock stays: it belongs to the open file, not the name
        self.path = path

    def release(self, remove: bool = True) -> None:
        if self.fd < 0:
            return
        if remove:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self.fd)  # closing drops the flock
        self.fd = -1


def lock_held(path: Path) -> bool | None:
    """True: a live process holds it. False: nobody does (its process died). None: no such file."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return True  # cannot open it to find out: assume the owner lives (never double-run)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the lock if we just took it
    return False


def run_alive(run: Any, db_path: Path) -> bool:
    """Whether the process of a run that has not ended still lives (see the module's docstring)."""
    held = lock_held(lock_path(db_path, run["id"]))
    if held is not None:
        return held
    verdict = same_process_alive(run["pid"], run["proc_start"], run["pid_ns"], run["boot_id"])
    if verdict is not None:
        return verdict
    return True  # another PID namespace and no lock file: nothing here can tell, so never double-run
