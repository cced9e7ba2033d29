"""What a trial's manifest recorded on the host, removed or listed by its recorded identity only.

A subject's adapter first stops its lab the lab's own way; these then remove whatever of the
manifest is still there (a process still running under its recorded pid and start time, a mount,
a chain, a cgroup), so a lab that could not stop cleanly, or whose state file is gone, still
leaves nothing behind. Never by name pattern: a parallel trial's things are never touched.

    sweep(manifest) -> [what was removed]
    remaining(manifest, more_processes=(), more_chains=()) -> [what is still there]
"""

from __future__ import annotations

import signal
from collections.abc import Iterable

from subjects import netfault, processes, tmpfs
from subjects.evaluation import Manifest
from subjects.processes import ProcessRecord


def _records(manifest: Manifest) -> list[ProcessRecord]:
    return [ProcessRecord(name=r.name, pid=r.pid, starttime=r.start_time, argv=[], log="")
            for r in manifest.processes]


def sweep(manifest: Manifest) -> list[str]:
    done = []
    for rec in _records(manifest):
        if processes.is_live(rec):
            processes.send(rec, signal.SIGCONT)
            processes.send(rec, signal.SIGKILL)
            processes.wait_dead(rec, 5.0)
            processes.reap(rec.pid)
            done.append(f"killed {rec.name} (pid {rec.pid})")
    for path in manifest.mounts:
        if tmpfs.is_mounted(path):
            done.append(f"unmounted {path}" if tmpfs.unmount(path) else f"could not unmount {path}")
    for name in manifest.chains:
        chain = netfault.Chain(name)
        if not chain.gone():
            chain.delete()
            done.append(f"deleted iptables chain {name}")
    for path in manifest.cgroups:
        if (netfault.CGROUP_ROOT / path).exists():
            done.append(f"removed cgroup {path}" if netfault.cgroup_remove(path) else f"could not remove cgroup {path}")
    return done


def remaining(manifest: Manifest, more_processes: Iterable[ProcessRecord] = (),
              more_chains: Iterable[str] = ()) -> list[str]:
    """What of the manifest (plus processes and chains the lab's own state names) is still there."""
    left, seen = [], set()
    for rec in [*_records(manifest), *more_processes]:
        if (rec.pid, rec.starttime) in seen:
            continue
        seen.add((rec.pid, rec.starttime))
        state = processes.process_state(rec)
        if state in (processes.RUNNING, processes.PAUSED):
            left.append(f"process {rec.name} (pid {rec.pid}) {state}")
    left += [f"mount {path}" for path in manifest.mounts if tmpfs.is_mounted(path)]
    left += [f"iptables chain {name}" for name in {*manifest.chains, *more_chains} if netfault.listing_naming(name)]
    left += [f"cgroup {path}" for path in manifest.cgroups if (netfault.CGROUP_ROOT / path).exists()]
    return left
