"""etcd's evaluation adapter (`subjects.evaluation.EvaluationAdapter`).

A trial's lab is the etcd lab (`subjects.etcd.lab`) on the slot's address block: member i on
127.(slot+10).0.i, each in a cgroup and on a tmpfs of its own, no load generator of the lab's. The
faults are `subjects.etcd.faults` (kill, pause, partition, disk full, quota fill, slow disk), given
the fault id the harness wrote down before applying them; the checks are `fault_checks`, the oracle
`oracle`, the workload etcd's own load generator in a process of the trial's, writing per-second
buckets (`subjects.openloop`).

Write-ahead: `plan_fault` records the member, the fault id and the member's process (pid and start
time) before anything happens; `apply_fault` then adds the fault's full record. A harness that dies
in between still leaves enough to undo it: the chain and the tracer a fault makes are registered in
the lab's state before they exist, and their names carry the fault id (`_pending_steps`).

Trial folder layout (TRIAL_DIR is the lab's run folder)::

    TRIAL_DIR/state.json, logs/, members/m<i>/ (each a tmpfs)   the lab
    TRIAL_DIR/workload/   process.json, buckets.jsonl, status.json, workload.log
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from subjects import manifest_sweep, processes, workload_process
from subjects.etcd import fault_checks, faults
from subjects.etcd.lab import EtcdFlags, EtcdLab, LabError
from subjects.etcd.oracle import Oracle
from subjects.evaluation import (
    FaultKind,
    FaultPlan,
    LabRequest,
    Manifest,
    OracleCheck,
    ProcessRef,
    Verdict,
    WorkloadBucket,
    WorkloadSpec,
    wait,
)

SUBJECT = "etcd"
EFFECT_TIMEOUT_S = 8.0
REVERT_CHECK_TIMEOUT_S = 12.0
WORKLOAD = "workload"
MIB = 1024 * 1024


class LabOptions(BaseModel):
    """A scenario's `lab:` options for etcd (unknown keys are an error)."""

    model_config = ConfigDict(extra="forbid")

    members: int = Field(3, ge=1, le=7)
    tmpfs_mb: int = Field(192, ge=160, le=1024)
    quota_mb: float = Field(16, gt=0, le=1024)
    heartbeat_ms: int = Field(50, ge=10, le=1000)
    election_ms: int = Field(500, ge=50, le=10_000)


def _affected(kind: str, member: str, members: list[str]) -> list[str]:
    """The entities etcd's tickets name for this fault (subjects/etcd/invariants.py)."""
    if kind == "quota_fill":
        return ["cluster", *(f"member:{m}" for m in members)]
    if kind == "slow_disk":
        return [f"member:{member}"]
    return [f"member:{member}", "cluster"]  # a member gone or cut off also lowers the fault tolerance


class EtcdEvaluation:
    subject = SUBJECT

    def __init__(self) -> None:
        self._oracles: dict[str, Oracle] = {}

    def fault_kinds(self) -> dict[str, FaultKind]:
        return {k.name: FaultKind(name=k.name, description=k.description,
                                  target_kind="member name (m1, m2, ...) or leader",
                                  params={n: f.default for n, f in k.params.model_fields.items()},
                                  self_heals=k.name == "restart_member")  # a restart ends by itself
                for k in faults.KINDS.values()}

    def lab_defaults(self) -> dict[str, Any]:
        return LabOptions().model_dump()

    def workload_defaults(self) -> WorkloadSpec:
        return WorkloadSpec(rate_per_s=20.0, slo_success=0.99, slo_p99_ms=200.0)

    def operator_settings(self) -> dict[str, Any]:
        return {"interval": 0.5}

    # -- the lab ---------------------------------------------------------------------------------

    async def reset(self, request: LabRequest) -> Manifest:
        try:
            options = LabOptions.model_validate(request.options)
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            raise ValueError(f"etcd lab option {'.'.join(map(str, first['loc']))}: {first['msg']}") from e
        trial_dir = Path(request.trial_dir)
        stale = _shell(trial_dir, request)
        await asyncio.to_thread(_teardown, stale)  # Jepsen's order: what a previous lab left goes first
        still = await asyncio.to_thread(_leftovers, stale)
        if still:
            raise RuntimeError(f"a previous lab in {trial_dir} could not be removed: {'; '.join(still)}")
        lab = EtcdLab(trial_dir)
        block = request.block
        flags = EtcdFlags(heartbeat_ms=options.heartbeat_ms, election_ms=options.election_ms,
                          quota_bytes=int(options.quota_mb * MIB))
        try:
            state = await asyncio.to_thread(lambda: lab.up(
                members=options.members, block=block.prefix, client_port=block.port(0), peer_port=block.port(1),
                load=False, flags=flags, tmpfs_mb=options.tmpfs_mb))
        except LabError as e:
            raise RuntimeError(f"etcd lab: {e}") from e
        manifest = _shell(trial_dir, request)
        urls = {m.name: m.client_url for m in state.members}
        manifest.section = {"endpoints": list(urls.values()), "lab_dir": str(lab.run_dir)}
        manifest.admin.update(members=urls)
        manifest.processes = [ProcessRef(r.name, r.pid, r.starttime, r.argv, r.cgroup)
                              for r in state.processes.values()]
        manifest.cgroups = [state.cgroup_root] if state.cgroup_root else []
        manifest.mounts = [m.folder for m in state.members if m.mounted]
        manifest.entities = [*(f"member:{m}" for m in urls), "cluster"]
        manifest.extra = {"ports": {"client": state.client_port, "peer": state.peer_port},
                          "addresses": {m.name: m.address for m in state.members}, "options": options.model_dump()}
        # The lab carries load from the start, as etcd's lab does: the operator's observation reads
        # its figures, and its first tick has something to record. `workload_start` replaces it
        # with the trial's own workload.
        defaults = self.workload_defaults()
        await asyncio.to_thread(_start_workload, manifest, WorkloadSpec(
            rate_per_s=defaults.rate_per_s, slo_p99_ms=defaults.slo_p99_ms, seed=request.seed))
        return manifest

    async def teardown(self, manifest: Manifest) -> list[str]:
        return await asyncio.to_thread(_teardown, manifest)

    async def leftovers(self, manifest: Manifest) -> list[str]:
        return await asyncio.to_thread(_leftovers, manifest)

    async def log_tails(self, manifest: Manifest, lines: int = 40) -> dict[str, str]:
        def read() -> dict[str, str]:
            out = {}
            for folder in (Path(manifest.trial_dir) / "logs", Path(manifest.admin["workload_dir"])):
                for path in sorted(folder.glob("*.log")) if folder.is_dir() else []:
                    out[path.stem] = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            return out

        return await asyncio.to_thread(read)

    # -- the oracle ------------------------------------------------------------------------------

    def _oracle(self, manifest: Manifest) -> Oracle:
        if manifest.ident not in self._oracles:
            self._oracles[manifest.ident] = Oracle(manifest.admin["members"], manifest.ident)
        return self._oracles[manifest.ident]

    async def oracle(self, manifest: Manifest, baseline: dict[str, Any] | None,
                     faults: list[FaultPlan]) -> list[OracleCheck]:
        try:
            return await self._oracle(manifest).check(baseline)
        except Exception as e:  # never raises for a sick lab: a check that could not be made failed
            return [OracleCheck("oracle", "cluster", False, f"oracle error: {type(e).__name__}: {e}")]

    async def baseline(self, manifest: Manifest) -> dict[str, Any]:
        return await self._oracle(manifest).baseline()

    # -- faults ----------------------------------------------------------------------------------

    async def plan_fault(self, manifest: Manifest, kind: str, target: str | None, params: dict[str, Any],
                         rng: random.Random, name: str) -> FaultPlan:
        if kind not in faults.KINDS:
            raise ValueError(f"unknown fault kind {kind!r} for etcd; kinds: {', '.join(faults.KINDS)}")
        try:
            p = faults.KINDS[kind].params.model_validate(params)
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            raise ValueError(f"{kind}: bad parameter {'.'.join(map(str, first['loc']))}: {first['msg']}") from e
        lab = _lab(manifest.admin["lab_dir"])

        def choose() -> tuple[str, dict | None]:
            if target is None:
                running = [m for m in lab.member_names() if faults.running(lab, m)]
                if not running:
                    raise RuntimeError("no member is running: nothing to inject into")
                member = rng.choice(running)
            else:
                member = faults.resolve_target(lab, target)[0].name
            rec = lab.process(member)
            return member, {"pid": rec.pid, "starttime": rec.starttime} if rec is not None else None

        member, proc = await asyncio.to_thread(choose)
        undo = {"mechanism": "etcd", "lab_dir": str(lab.run_dir), "kind": kind, "member": member,
                "params": p.model_dump(), "fid": f"etcd-{name}", "member_process": proc, "record": None}
        return FaultPlan(kind=kind, target=member, params=p.model_dump(), undo=undo,
                         affected=_affected(kind, member, lab.member_names()), name=name,
                         detail=f"{kind} on {member}")

    async def apply_fault(self, manifest: Manifest, plan: FaultPlan) -> dict[str, Any]:
        undo = plan.undo
        lab = _lab(undo["lab_dir"])
        try:
            record = await asyncio.to_thread(faults.inject, lab, plan.kind, undo["member"], undo["params"],
                                             undo["fid"])
        except faults.FaultError as e:
            raise RuntimeError(str(e)) from e
        record["planned_process"] = undo["member_process"]  # what the checks compare the member's run with
        undo["record"] = record
        return {"done": record["done"], "effect": record["effect"], "injected_at": record["injected_at"]}

    async def fault_effect(self, manifest: Manifest, plan: FaultPlan) -> Verdict:
        lab = _lab(plan.undo["lab_dir"])
        record = plan.undo["record"]
        if record is None:
            return Verdict(False, "the fault was never applied", {})
        return await asyncio.to_thread(wait, lambda: fault_checks.effect(lab, record), EFFECT_TIMEOUT_S)

    async def revert_fault(self, undo: dict[str, Any]) -> str:
        return await asyncio.to_thread(_revert, undo)

    async def fault_reverted(self, undo: dict[str, Any]) -> Verdict:
        lab, up = _lab_if_up(undo["lab_dir"])
        record = undo.get("record") or _pending_record(lab if up else None, undo)
        return await asyncio.to_thread(wait, lambda: fault_checks.reverted(lab if up else None, record),
                                       REVERT_CHECK_TIMEOUT_S)

    # -- the workload ----------------------------------------------------------------------------

    async def workload_start(self, manifest: Manifest, spec: WorkloadSpec) -> None:
        await asyncio.to_thread(workload_process.stop, Path(manifest.admin["workload_dir"]))
        await asyncio.to_thread(_start_workload, manifest, spec)

    async def workload_read(self, manifest: Manifest, after_wall: float | None) -> list[WorkloadBucket]:
        lines = await asyncio.to_thread(workload_process.read, Path(manifest.admin["workload_dir"]), after_wall)
        return [WorkloadBucket(**line) for line in lines]

    async def workload_stop(self, manifest: Manifest) -> None:
        await asyncio.to_thread(workload_process.stop, Path(manifest.admin["workload_dir"]))


ADAPTER = EtcdEvaluation()


# -- helpers (synchronous: run in a thread) ------------------------------------------------------

def _shell(trial_dir: Path, request: LabRequest) -> Manifest:
    return Manifest(subject=SUBJECT, block=request.block.to_dict(), trial_dir=str(trial_dir), ident=request.ident,
                    admin={"lab_dir": str(trial_dir), "workload_dir": str(trial_dir / WORKLOAD)},
                    data_dirs=[str(trial_dir)])


def _lab(lab_dir: str) -> EtcdLab:
    try:
        return EtcdLab.load(lab_dir)
    except LabError as e:
        raise RuntimeError(str(e)) from e


def _lab_if_up(lab_dir: str) -> tuple[EtcdLab, bool]:
    lab = EtcdLab(lab_dir)
    try:
        return lab, lab.state_path.exists() and lab.is_up()
    except LabError:
        return lab, False


def _start_workload(manifest: Manifest, spec: WorkloadSpec) -> None:
    params = dict(spec.params)
    folder = Path(manifest.admin["workload_dir"])
    # Its status goes where the lab's own load generator writes it: the operator's observation reads
    # the client-side figures (qps, errors, p99) there, as it does on any etcd lab.
    status = EtcdLab(manifest.admin["lab_dir"]).loadgen_status_path
    argv = [sys.executable, "-m", "subjects.etcd.loadgen", "--rate", str(spec.rate_per_s), "--seed",
            str(spec.seed), "--duration-s", str(float(params.pop("max_duration_s", 1800))),
            "--buckets-dir", str(folder), "--status-file", str(status),
            "--slo-ms", str(spec.slo_p99_ms), "--parent-pid", str(os.getpid())]
    if params:
        raise ValueError(f"unknown etcd workload parameter(s): {', '.join(params)} (known: max_duration_s)")
    for url in manifest.admin["members"].values():
        argv += ["--endpoint", url]
    workload_process.start(folder, argv, processes.child_env(), "127.0.0.1", status_file=status)


def _pending_steps(lab: EtcdLab | None, undo: dict[str, Any]) -> list[dict]:
    """What undoes a fault whose full record was never stored (the harness died while applying it),
    from what the plan wrote down and the names `subjects.etcd.faults` gives what it creates (they
    carry the fault id): the chain and the tracer are registered in the lab's state first."""
    kind, member, fid = undo["kind"], undo["member"], undo["fid"]
    steps: list[dict] = []
    if kind == "pause_member" and undo.get("member_process"):
        steps.append({"op": "signal", "member": member, **undo["member_process"], "signal": "SIGCONT"})
    if lab is not None:
        state = lab.state
        steps += [{"op": "chain", "chain": c} for c in state.chains if c.endswith(fid[-10:])]
        steps += [{"op": "stop_tracer", "name": n, "pid": r.pid, "starttime": r.starttime, "member": member}
                  for n, r in state.processes.items() if n.startswith("strace-") and n.endswith(fid[-6:])]
        if kind == "disk_full":
            steps.append({"op": "remove_file", "member": member,
                          "path": str(Path(lab.member(member).folder) / f"chaos-filler-{fid}")})
        if kind in ("kill_member", "stop_member", "restart_member", "disk_full"):
            steps.append({"op": "start_member", "member": member})
        if kind in ("disk_full", "quota_fill"):
            op = "delete_prefix" if kind == "disk_full" else "quota_recover"
            steps.append({"op": op, "prefix": f"/chaos/{kind}/{fid}"})
    return steps


def _pending_record(lab: EtcdLab | None, undo: dict[str, Any]) -> dict:
    return {"id": undo["fid"], "kind": undo["kind"], "target": undo["member"], "effect": {},
            "undo": _pending_steps(lab, undo)}


def _revert(undo: dict[str, Any]) -> str:
    lab, up = _lab_if_up(undo["lab_dir"])
    record = undo.get("record") or _pending_record(lab if up else None, undo)
    if not up:
        # `lab down` stopped every member and tracer, removed the chains it had registered and
        # unmounted the disks; a chain is the one thing that could still be there.
        record = {**record, "undo": [s for s in record["undo"] if s.get("op") == "chain"]}
    report = faults.revert(lab, record)
    if not report["ok"]:
        failed = "; ".join(f"{f['step'].get('op')}: {f['reason']}" for f in report["failed"])
        raise RuntimeError(f"could not revert {undo['kind']} on {undo['member']}: {failed}")
    parts = report["undone"] + [f"(already) {t}" for t in report["nothing_to_do"]]
    return f"reverted {undo['kind']} on {undo['member']}: " + ("; ".join(parts) or "nothing to do")


def _teardown(manifest: Manifest) -> list[str]:
    done = []
    stopped = workload_process.stop(Path(manifest.admin.get("workload_dir", Path(manifest.trial_dir) / WORKLOAD)))
    if stopped:
        done.append(stopped)
    lab = EtcdLab(manifest.admin.get("lab_dir", manifest.trial_dir))
    if lab.state_path.exists():
        try:
            report = lab.down()
            done += [f"{s['name']} (pid {s['pid']}) {s['outcome']}" for s in report["stopped"]]
            done += [f"removed {r}" for r in report["removed"]]
        except LabError as e:
            done.append(f"lab down: {e}")
    done += manifest_sweep.sweep(manifest)
    return done


def _leftovers(manifest: Manifest) -> list[str]:
    workload = workload_process.process(Path(manifest.admin.get("workload_dir", Path(manifest.trial_dir) / WORKLOAD)))
    records = [workload] if workload else []
    chains: list[str] = []
    lab = EtcdLab(manifest.admin.get("lab_dir", manifest.trial_dir))
    try:
        if lab.state_path.exists():
            records += list(lab.state.processes.values())
            chains = list(lab.state.chains)
    except LabError:
        pass
    return manifest_sweep.remaining(manifest, records, chains)
