"""A small tmpfs as a disk of known size: mounted at lab start so that filling it is a real full disk.

    mount(path, size_mb)    mount -t tmpfs -o size=Nm (refuses a path that is already a mount point)
    unmount(path) -> bool   umount, True once /proc/self/mountinfo no longer lists the path
    is_mounted(path)        from /proc/self/mountinfo (not from `mount` output)
    usage(path)             {"total_bytes", "free_bytes", "used_bytes"} from statvfs
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path


class TmpfsError(Exception):
    pass


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every mount this process sees."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) > 4 and right:
            found.append((_unescape(fields[4]), right.split()[0]))
    return found


def is_mounted(path: str | Path) -> bool:
    target = str(Path(path).resolve())
    return any(point == target for point, _ in mount_points())


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which(argv[0])
    if binary is None:
        raise TmpfsError(f"{argv[0]} is not installed")
    return subprocess.run([binary, *argv[1:]], capture_output=True, text=True, timeout=30)


def mount(path: str | Path, size_mb: int) -> None:
    target = Path(path).resolve()
    if not 1 <= size_mb <= 4096:
        raise TmpfsError(f"tmpfs size must be between 1 and 4096 MiB, got {size_mb}")
    if is_mounted(target):
        raise TmpfsError(f"{target} is already a mount point")
    if os.geteuid() != 0:
        raise TmpfsError(f"mounting a tmpfs at {target} needs root")
    target.mkdir(parents=True, exist_ok=True)
    result = _run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(target)])
    if result.returncode != 0:
        raise TmpfsError(f"mount tmpfs at {target}: {result.stderr.strip() or result.returncode}")


def unmount(path: str | Path, timeout_s: float = 5.0) -> bool:
    """Unmount (idempotent); True when the path is no longer a mount point. A busy mount is retried
    until `timeout_s` (a process that just exited may still hold it for a moment)."""
    target = Path(path).resolve()
    deadline = time.monotonic() + timeout_s
    while is_mounted(target):
        _run(["umount", str(target)])
        if not is_mounted(target):
            break
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def usage(path: str | Path) -> dict[str, int]:
    st = os.statvfs(path)
    total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    return {"total_bytes": total, "free_bytes": free, "used_bytes": total - free}
