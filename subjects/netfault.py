"""Real network partitions on one machine: iptables rules on loopback addresses, per process group.

Every 127.x.y.z address is local, so each lab node can listen on an address of its own. A node's
outgoing traffic is told apart by the cgroup (v2) its processes run in, which iptables matches
with `-m cgroup --path`; its incoming traffic by its address. A partition is then a DROP in a
chain of its own, jumped to from OUTPUT (loopback packets pass OUTPUT once), named uniquely by
whoever creates it and recorded so that it can be removed and checked gone from its name alone.

    with_cgroup("operator-tui/lab-1234/m2")   # preexec_fn for Popen: the child joins that cgroup
    chain = Chain("OPEV1a2b3c4d1")
    chain.create(); chain.drop(dst="127.0.0.3", cgroup="operator-tui/lab-1234/m2")
    chain.packets() -> int   # how many packets the chain has dropped (effect check)
    chain.delete(); chain.exists() -> False   # (revert, revert check)
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup/unified")  # the cgroup v2 hierarchy (hybrid mode on these hosts)
CHAIN_NAME = re.compile(r"^[A-Za-z0-9_-]{1,28}$")


class NetFaultError(Exception):
    pass


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("iptables")
    if binary is None:
        raise NetFaultError("iptables is not installed (Debian: apt-get install iptables)")
    result = subprocess.run([binary, "-w", "5", *args], capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise NetFaultError(f"iptables {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


# -- cgroups: which process a packet comes from -------------------------------------------------

def cgroup_available() -> bool:
    return (CGROUP_ROOT / "cgroup.procs").exists()


def cgroup_create(path: str) -> Path:
    """Create (or reuse) the cgroup `path` (relative to the v2 root)."""
    if not cgroup_available():
        raise NetFaultError(f"no cgroup v2 hierarchy at {CGROUP_ROOT}: per-node partitions need one")
    target = CGROUP_ROOT / path
    target.mkdir(parents=True, exist_ok=True)
    return target


def cgroup_join(path: str) -> Callable[[], None]:
    """A Popen preexec_fn: the child (and everything it starts) joins the cgroup `path`."""
    procs = CGROUP_ROOT / path / "cgroup.procs"

    def join() -> None:
        with open(procs, "w") as f:
            f.write("0")

    return join


def cgroup_add(path: str, pid: int) -> None:
    (CGROUP_ROOT / path / "cgroup.procs").write_text(str(pid))


def cgroup_remove(path: str) -> bool:
    """Remove the cgroup `path` and its empty parents up to the first that is not empty; True when
    it is gone. A cgroup that still holds processes stays (and False says so)."""
    target = CGROUP_ROOT / path
    if not target.exists():
        return True
    for child in sorted((p for p in target.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            child.rmdir()
        except OSError:
            return False
    try:
        target.rmdir()
    except OSError:
        return False
    parent = target.parent
    while parent != CGROUP_ROOT and parent.is_relative_to(CGROUP_ROOT):
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent
    return True


def cgroup_pids(path: str) -> list[int]:
    try:
        return [int(x) for x in (CGROUP_ROOT / path / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def listing_naming(name: str) -> list[str]:
    """Every line of `iptables -S` (the whole filter table) that names `name`: its chain, its rules
    or a jump to it. Empty once a chain is really gone."""
    out = _iptables("-S", check=False).stdout
    return [line for line in out.splitlines() if name in line.split()]


# -- chains: the rules of one fault -----------------------------------------------------------

class Chain:
    """One iptables chain in the filter table, jumped to from OUTPUT, holding one fault's rules."""

    def __init__(self, name: str, hook: str = "OUTPUT"):
        if not CHAIN_NAME.match(name):
            raise NetFaultError(f"bad chain name {name!r} (letters, digits, _ and -, at most 28)")
        self.name = name
        self.hook = hook

    def exists(self) -> bool:
        return _iptables("-S", self.name, check=False).returncode == 0

    def hooked(self) -> bool:
        return _iptables("-C", self.hook, "-j", self.name, check=False).returncode == 0

    def create(self) -> None:
        """Create the chain and its jump (idempotent)."""
        if not self.exists():
            _iptables("-N", self.name)
        if not self.hooked():
            _iptables("-I", self.hook, "1", "-j", self.name)

    def drop(self, *, dst: str | None = None, src: str | None = None, cgroup: str | None = None,
             dport: int | None = None, proto: str = "tcp") -> list[str]:
        """Add one DROP rule; returns the rule as iptables prints it back with -S."""
        spec: list[str] = []
        if src:
            spec += ["-s", src]
        if dst:
            spec += ["-d", dst]
        if dport is not None:
            spec += ["-p", proto, "--dport", str(dport)]
        if cgroup:
            spec += ["-m", "cgroup", "--path", cgroup]
        if not spec:
            raise NetFaultError("refusing a DROP rule that matches everything")
        _iptables("-A", self.name, *spec, "-j", "DROP")
        return spec

    def rules(self) -> list[str]:
        result = _iptables("-S", self.name, check=False)
        if result.returncode != 0:
            return []
        return [line for line in result.stdout.splitlines() if line.startswith("-A ")]

    def packets(self) -> int:
        """Packets dropped by the chain's rules so far (its counters)."""
        result = _iptables("-L", self.name, "-v", "-n", "-x", check=False)
        if result.returncode != 0:
            return 0
        total = 0
        for line in result.stdout.splitlines()[2:]:
            fields = line.split()
            if fields and fields[0].isdigit():
                total += int(fields[0])
        return total

    def delete(self) -> None:
        """Remove the jump, flush and delete the chain, whichever of them exist (idempotent)."""
        while self.hooked():
            _iptables("-D", self.hook, "-j", self.name)
        if self.exists():
            _iptables("-F", self.name)
            _iptables("-X", self.name)

    def gone(self) -> bool:
        return not self.exists() and not self.hooked()
