"""What a subject gives the evaluation harness: its lab per trial slot, its oracle, its faults and
its workload. The harness (`eval/`) knows subjects only through this module and the adapter each
plug-in names (`SubjectPlugin.evaluation = "subjects.<name>.evaluation:ADAPTER"`).

Standard library only, like `subjects/plugin.py`; subjects never import `eval/` or the core.

One trial, as the harness drives an adapter (reference: shared/reference/eval.md §2):

    block = AddressBlock.for_slot(slot, port_base)         # 127.(slot+10).0.N, ports from port_base
    manifest = await adapter.reset(LabRequest(block, trial_dir, ident, seed, options))
        # tears down whatever a previous lab left in trial_dir first, then starts a fresh lab;
        # the manifest records every pid (with its start time), cgroup, mount, chain and data dir
    checks = await adapter.oracle(manifest, baseline=None, faults=[])   # until every check is ok
    await adapter.workload_start(manifest, WorkloadSpec(...))
    baseline = await adapter.baseline(manifest)            # after healthy, before inject
    plan = await adapter.plan_fault(manifest, kind, target, params, rng, name)
        # plan.undo is COMPLETE before anything is applied: the harness writes it ahead
    evidence = await adapter.apply_fault(manifest, plan)
    verdict = await adapter.fault_effect(manifest, plan)   # not ok: the trial is invalid
    ... observe: adapter.oracle(manifest, baseline, [plan]) every second, workload_read ...
    await adapter.revert_fault(plan.undo)                  # from the record alone; idempotent
    verdict = await adapter.fault_reverted(plan.undo)
    await adapter.workload_stop(manifest); await adapter.teardown(manifest)

`revert_fault`, `fault_reverted` and `teardown` run again from stored JSON after a crash (the
start-up sweeper and `operator-tui eval cleanup`), so they must need nothing but their argument,
be idempotent, and act only on recorded identities (pid plus start time, chain name, mount
path, the simulator's fault id, cgroup path), never on name patterns.

Everything that crosses the boundary is plain JSON-able data (dicts of str, int, float, bool,
lists), so that it can be stored and read back as is.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

CheckKind = Literal["health", "safety"]


# -- where a trial's lab lives ----------------------------------------------------------------

@dataclass(frozen=True)
class AddressBlock:
    """A slot's loopback block: slot k owns 127.(k+10).0.1 .. 127.(k+10).0.254, and every lab node
    listens on (and connects from) its own address in it, so slots share port numbers without
    meeting. `port_base` is where the lab's ports start (the same in every slot is fine)."""

    slot: int
    port_base: int = 24000

    def __post_init__(self) -> None:
        if not 0 <= self.slot <= 244:
            raise ValueError(f"slot {self.slot} out of range 0..244")
        if not 1024 <= self.port_base <= 65000:
            raise ValueError(f"port base {self.port_base} out of range 1024..65000")

    @classmethod
    def for_slot(cls, slot: int, port_base: int = 24000) -> AddressBlock:
        return cls(slot, port_base)

    @property
    def prefix(self) -> str:
        return f"127.{self.slot + 10}.0"

    @property
    def cidr(self) -> str:
        return f"{self.prefix}.0/24"

    def address(self, n: int) -> str:
        """The n-th address of the block (1..254)."""
        if not 1 <= n <= 254:
            raise ValueError(f"address index {n} out of range 1..254")
        return f"{self.prefix}.{n}"

    def port(self, offset: int = 0) -> int:
        return self.port_base + offset

    def contains(self, address: str) -> bool:
        return address.startswith(self.prefix + ".")

    def to_dict(self) -> dict[str, Any]:
        return {"slot": self.slot, "port_base": self.port_base, "prefix": self.prefix}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AddressBlock:
        return cls(int(data["slot"]), int(data.get("port_base", 24000)))


@dataclass(frozen=True)
class LabRequest:
    """What the harness asks of `reset`: a fresh lab on `block`, its files under `trial_dir`.

    ident: a short unique name for this trial ([a-z0-9], <= 12 chars) for everything the lab or a
           fault creates on the host (cgroups, chains): unique per trial, never reused.
    options: the scenario's lab options (e.g. {"stores": 5, "regions": 200}); unknown keys are an
           error the adapter raises as ValueError.
    """

    block: AddressBlock
    trial_dir: Path
    ident: str
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProcessRef:
    """A process the lab (or a fault) started: signal it only while pid AND start time match."""

    name: str
    pid: int
    start_time: int  # /proc/PID/stat field 22 (clock ticks since boot)
    argv: list[str] = field(default_factory=list)
    cgroup: str | None = None

    @classmethod
    def of(cls, name: str, pid: int, argv: list[str] | None = None, cgroup: str | None = None) -> ProcessRef:
        start = proc_start_time(pid)
        if start is None:
            raise ProcessLookupError(f"{name}: no process {pid}")
        return cls(name, pid, start, list(argv or []), cgroup)

    def alive(self) -> bool:
        return same_process(self.pid, self.start_time) and proc_state(self.pid) not in (None, "Z", "X")


@dataclass
class Manifest:
    """Everything one lab put on the host, enough to tear it down from this record alone.

    section: the subject's settings section that points the operator at this lab (what goes under
             `[<subject>]` in the operator's config); never holds harness-only endpoints.
    admin:   harness-only endpoints and facts (fault API, host control, workload read-out): the
             operator, the agent and its shell are never told about them.
    """

    subject: str
    block: dict[str, Any]
    trial_dir: str
    ident: str
    section: dict[str, Any] = field(default_factory=dict)
    admin: dict[str, Any] = field(default_factory=dict)
    processes: list[ProcessRef] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)
    data_dirs: list[str] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)  # what faults may target: "store:1", "node:rl-2"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        data = dict(data)
        data["processes"] = [ProcessRef(**p) for p in data.get("processes", [])]
        return cls(**data)

    @property
    def address_block(self) -> AddressBlock:
        return AddressBlock.from_dict(self.block)


# -- the oracle -----------------------------------------------------------------------------

@dataclass
class OracleCheck:
    """One direct observation of the lab by the harness (never the operator's tickets).

    check: a stable name ("stores_up", "regions_replicated", "workload_slo", "baseline_preserved")
    entity: what it is about ("store:2", "cluster", "node:rl-1")
    kind: "health" (must be ok for the trial to count as recovered) or "safety" (a failure means
          the operator did harm: scaled away, removed, deleted; the trial is `harmful`)
    """

    check: str
    entity: str
    ok: bool
    detail: str = ""
    kind: CheckKind = "health"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Verdict:
    """The answer of an effect check or a revert check, with the evidence it rests on."""

    ok: bool
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wait(check: Callable[[], Verdict], timeout_s: float, interval_s: float = 0.25) -> Verdict:
    """Poll `check` until it holds or `timeout_s` passes; the last verdict either way."""
    deadline = time.monotonic() + timeout_s
    while True:
        verdict = check()
        if verdict.ok or time.monotonic() >= deadline:
            return verdict
        time.sleep(interval_s)


# -- faults ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FaultKind:
    """A fault a subject offers the harness. `target_kind` names what --target is ("store id")."""

    name: str
    description: str
    target_kind: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # parameter -> default
    self_heals: bool = False  # the system recovers on its own in time (a baseline can succeed)


@dataclass
class FaultPlan:
    """One fault, planned: written to the store BEFORE it is applied (write-ahead).

    undo:     everything `revert_fault` and `fault_reverted` need, alone and after a crash
              (e.g. {"mechanism": "sim", "admin": URL, "fault_id": "..."} or
              {"mechanism": "iptables", "chain": "OPEV1a2b3c4d1"}); must be complete before apply.
    affected: the entities the fault touches, as the subject's tickets name them ("store:2").
    name:     the fault's unique name on the host (chain names, simulator fault ids use it).
    """

    kind: str
    target: str | None
    params: dict[str, Any]
    undo: dict[str, Any]
    affected: list[str]
    name: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultPlan:
        return cls(**data)


# -- the workload -----------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkloadSpec:
    """An open-loop workload: requests are planned at `rate_per_s` whatever the answers do.
    slo: a bucket meets it when ok/planned >= slo_success and p99 <= slo_p99_ms."""

    rate_per_s: float = 50.0
    slo_success: float = 0.99
    slo_p99_ms: float = 200.0
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WorkloadBucket:
    """One second of the workload. t_wall: the bucket's start (Unix seconds, whole second)."""

    t_wall: float
    planned: int
    ok: int
    fail: int
    indeterminate: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    over_slo: int = 0  # requests that succeeded slower than the SLO's latency

    def meets(self, spec: WorkloadSpec) -> bool:
        if self.planned <= 0:
            return True
        if self.ok / self.planned < spec.slo_success:
            return False
        return self.p99_ms is None or self.p99_ms <= spec.slo_p99_ms

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the adapter --------------------------------------------------------------------------------

@runtime_checkable
class EvaluationAdapter(Protocol):
    """A subject's adapter. All methods may raise ValueError (bad options, unknown kind or target:
    a user error) or RuntimeError (the lab misbehaved: an infrastructure error)."""

    subject: str

    def fault_kinds(self) -> dict[str, FaultKind]:
        """Every fault kind the harness may inject, by name."""
        ...

    def lab_defaults(self) -> dict[str, Any]:
        """The lab options a scenario gets when it names none."""
        ...

    def workload_defaults(self) -> WorkloadSpec:
        ...

    def operator_settings(self) -> dict[str, Any]:
        """Core settings the operator needs for trials of this subject to be fast and fair
        (e.g. {"interval": 0.5}); merged under the variant's own settings."""
        ...

    async def reset(self, request: LabRequest) -> Manifest:
        """Tear down what a previous lab left in request.trial_dir, then start a fresh lab."""
        ...

    async def teardown(self, manifest: Manifest) -> list[str]:
        """Stop every process (pid + start time checked), remove cgroups, mounts and chains of the
        manifest. Idempotent; returns one line per thing removed ([] when nothing was left)."""
        ...

    async def leftovers(self, manifest: Manifest) -> list[str]:
        """What of the manifest is still on the host (live processes, chains, mounts, cgroups)."""
        ...

    async def oracle(self, manifest: Manifest, baseline: dict[str, Any] | None,
                     faults: list[FaultPlan]) -> list[OracleCheck]:
        """The harness's own direct checks, one call per second; never raises for a sick lab
        (an unreachable endpoint is a failed check)."""
        ...

    async def baseline(self, manifest: Manifest) -> dict[str, Any]:
        """A snapshot taken after healthy, before inject, that `oracle` guards (safety checks)."""
        ...

    async def plan_fault(self, manifest: Manifest, kind: str, target: str | None, params: dict[str, Any],
                         rng: random.Random, name: str) -> FaultPlan:
        """Choose the target (with rng when none is given) and write down the complete undo."""
        ...

    async def apply_fault(self, manifest: Manifest, plan: FaultPlan) -> dict[str, Any]:
        """Apply the fault; returns evidence. May add to plan.undo, never depends on it."""
        ...

    async def fault_effect(self, manifest: Manifest, plan: FaultPlan) -> Verdict:
        """Did the fault land (process state from /proc, chain counters, fault listing, ...)?"""
        ...

    async def revert_fault(self, undo: dict[str, Any]) -> str:
        """Undo from the record alone; idempotent; safe when the target was already restarted."""
        ...

    async def fault_reverted(self, undo: dict[str, Any]) -> Verdict:
        """Is nothing of the fault left?"""
        ...

    async def workload_start(self, manifest: Manifest, spec: WorkloadSpec) -> None:
        ...

    async def workload_read(self, manifest: Manifest, after_wall: float | None) -> list[WorkloadBucket]:
        """Complete buckets with t_wall > after_wall (all when None), oldest first."""
        ...

    async def workload_stop(self, manifest: Manifest) -> None:
        ...

    async def log_tails(self, manifest: Manifest, lines: int = 40) -> dict[str, str]:
        """The last lines of each lab process's log, for the trial's record."""
        ...


# -- processes by identity (pid plus start time) ---------------------------------------------

def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks after boot), or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[19])  # field 22 is the 20th after the command name


def proc_state(pid: int) -> str | None:
    """The one-letter state from /proc/PID/status (R, S, D, T, t, Z, X), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return line.split()[1]
    except OSError:
        return None
    return None


def same_process(pid: int, start_time: int) -> bool:
    return proc_start_time(pid) == start_time


def signal_process(pid: int, start_time: int, sig: int = signal.SIGKILL) -> bool:
    """Send sig only if pid still names the process that started at start_time; True if sent."""
    if not same_process(pid, start_time):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True
