"""The rate limiter's evaluation adapter (`subjects.evaluation.EvaluationAdapter`).

A trial's lab is the usual rate limiter lab (`lab`) on the slot's address block: Redis, the fault
proxy and every node on an address of their own, each process in a cgroup named after the trial,
Redis's data on a small tmpfs with save points. Faults are `faults` (planned, then applied), their
checks `fault_checks`, the oracle `oracle`, the workload `workload` (its own process, writing
buckets to the trial folder). Everything the harness stores (manifest, fault undo) is plain JSON
that `teardown`, `revert_fault` and `fault_reverted` can act on alone after a crash.

With the lab option ``kind: docker`` the same lab runs as containers (`docker_lab`) on the slot's
block, Redis's tmpfs inside its container; the manifest records the containers' ids (and the
engine), by which a crashed trial's containers are removed. Faults, checks, the oracle and the
workload are the same.

Trial folder layout (TRIAL_DIR is the lab's run folder)::

    TRIAL_DIR/state.json, logs/, redis/ (the tmpfs)   the lab
    TRIAL_DIR/workload/       process.json (pid + start time), buckets.jsonl, status.json, log
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from containers import engine
from containers import nodes as ctr
from subjects import manifest_sweep, netfault, processes, workload_process
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
from subjects.ratelimiter import fault_checks, faults
from subjects.ratelimiter.addresses import AddressPlan
from subjects.ratelimiter.docker_lab import DockerRateLimiterLab
from subjects.ratelimiter.lab import LabError, NodeOptions, RateLimiterLab, open_lab
from subjects.ratelimiter.oracle import Oracle

SUBJECT = "ratelimiter"
EFFECT_TIMEOUT_S = 8.0  # under the harness's 10 s effect deadline
REVERT_CHECK_TIMEOUT_S = 12.0  # a restarted node, Redis's next successful save
WORKLOAD = "workload"


class LabOptions(BaseModel):
    """A scenario's `lab:` options for the rate limiter (unknown keys are an error)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["process", "docker"] = "process"  # processes, or containers on a Docker engine
    nodes: int = Field(3, ge=1, le=20)
    redis_disk_mb: int = Field(16, ge=1, le=1024)
    redis_save_s: int = Field(1, ge=1, le=60)
    heartbeat_ms: int = Field(500, ge=50, le=10_000)
    node_ttl_ms: int = Field(2000, ge=100, le=60_000)
    redis_timeout_ms: int = Field(300, ge=10, le=10_000)
    fail_mode: str = Field("closed", pattern="^(closed|open)$")


def _affected(record: dict, nodes: list[str]) -> list[str]:
    """The entities the subject's tickets name for this fault (subjects/ratelimiter/invariants.py)."""
    kind, target = record["kind"], record["target"]
    if kind in ("redis_pause", "redis_disk_full"):
        return ["redis"]
    if kind == "redis_latency" and target == "*":
        return ["cluster", *(f"node:{n}" for n in nodes)]
    return [f"node:{target}"]


def _run_sync(fn, *args):
    return asyncio.to_thread(fn, *args)


class RateLimiterEvaluation:
    subject = SUBJECT

    def __init__(self) -> None:
        self._oracles: dict[str, Oracle] = {}

    # -- what the subject offers -------------------------------------------------------------------

    def fault_kinds(self) -> dict[str, FaultKind]:
        targets = {"node": "node id (n1, n2, ...)", "redis": "redis (no target)", "links": "node id, or * for all"}
        return {
            k.name: FaultKind(
                name=k.name,
                description=k.description,
                target_kind=targets[k.target],
                params={name: f.default for name, f in k.params.model_fields.items()},
                self_heals=k.self_heals,
            )
            for k in faults.KINDS.values()
        }

    def lab_defaults(self) -> dict[str, Any]:
        return LabOptions().model_dump()

    def workload_defaults(self) -> WorkloadSpec:
        return WorkloadSpec(rate_per_s=50.0, slo_success=0.99, slo_p99_ms=200.0, params={"keys": 8})

    def operator_settings(self) -> dict[str, Any]:
        return {"interval": 0.5}

    # -- the lab ---------------------------------------------------------------------------------

    async def reset(self, request: LabRequest) -> Manifest:
        try:
            options = LabOptions.model_validate(request.options)
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            raise ValueError(f"ratelimiter lab option {'.'.join(map(str, first['loc']))}: {first['msg']}") from e
        trial_dir = Path(request.trial_dir)
        stale = _manifest_shell(trial_dir, request)
        left = await self.teardown(stale)  # Jepsen's order: whatever a previous lab left goes first
        still = await self.leftovers(stale)
        if still:
            raise RuntimeError(f"a previous lab in {trial_dir} could not be removed: {'; '.join(still)} ({left})")
        block = request.block
        node_options = NodeOptions(heartbeat_ms=options.heartbeat_ms, node_ttl_ms=options.node_ttl_ms,
                                   redis_timeout_ms=options.redis_timeout_ms, fail_mode=options.fail_mode)
        up: dict[str, Any] = {"nodes": options.nodes, "redis_port": block.port(0), "base_port": block.port(0),
                              "load": False, "node_options": node_options, "block": block.prefix,
                              "redis_disk_mb": options.redis_disk_mb, "redis_save_s": options.redis_save_s}
        if options.kind == "docker":
            lab: RateLimiterLab = DockerRateLimiterLab(trial_dir)
        else:
            lab = RateLimiterLab(trial_dir)
            up["ident"] = request.ident  # names the lab's cgroup after the trial
        try:
            state = await _run_sync(lambda: lab.up(**up))
        except LabError as e:
            raise RuntimeError(f"ratelimiter lab: {e}") from e
        plan = AddressPlan(state.block)
        manifest = _manifest_shell(trial_dir, request)
        manifest.section = {"nodes": [n.url for n in state.nodes], "redis": state.redis_url, "lab_dir": str(lab.run_dir)}
        manifest.admin = {
            "lab_dir": str(lab.run_dir),
            "proxy_url": state.proxy_url,
            "redis_url": state.redis_url,
            "nodes": {n.id: n.url for n in state.nodes},
            "oracle_address": plan.oracle,
            "workload_address": plan.workload,
            "workload_dir": str(trial_dir / WORKLOAD),
        }
        manifest.processes = [ProcessRef(rec.name, rec.pid, rec.starttime, rec.argv, rec.cgroup)
                              for rec in state.processes.values()]
        manifest.cgroups = [state.cgroup] if state.cgroup else []
        manifest.mounts = [state.redis_disk.path] if state.redis_disk and state.runtime == "process" else []
        manifest.data_dirs = [str(lab.run_dir)]
        manifest.entities = [*(f"node:{n.id}" for n in state.nodes), "redis"]
        manifest.extra = {"ports": {what: f"{h}:{p}" for what, (h, p) in state.endpoints().items()},
                          "options": options.model_dump(), "redis_disk_mb": options.redis_disk_mb}
        if state.runtime == "docker":
            manifest.extra.update(docker_host=state.docker_host,
                                  containers={name: rec.id for name, rec in state.containers.items()})
        return manifest

    async def teardown(self, manifest: Manifest) -> list[str]:
        return await _run_sync(_teardown, manifest)

    async def leftovers(self, manifest: Manifest) -> list[str]:
        return await _run_sync(_leftovers, manifest)

    async def log_tails(self, manifest: Manifest, lines: int = 40) -> dict[str, str]:
        def read() -> dict[str, str]:
            out = {}
            folders = [Path(manifest.trial_dir) / "logs", Path(manifest.trial_dir) / WORKLOAD]
            for folder in folders:
                for path in sorted(folder.glob("*.log")) if folder.is_dir() else []:
                    text = path.read_text(errors="replace").splitlines()[-lines:]
                    out[path.stem] = "\n".join(text)
            return out

        return await _run_sync(read)

    # -- the oracle ------------------------------------------------------------------------------

    def _oracle(self, manifest: Manifest) -> Oracle:
        oracle = self._oracles.get(manifest.ident)
        if oracle is None:
            admin = manifest.admin
            oracle = Oracle(admin["redis_url"], admin["nodes"], admin.get("oracle_address"), manifest.ident)
            self._oracles[manifest.ident] = oracle
        return oracle

    async def oracle(self, manifest: Manifest, baseline: dict[str, Any] | None,
                     faults: list[FaultPlan]) -> list[OracleCheck]:
        try:
            return await self._oracle(manifest).check(baseline)
        except Exception as e:  # the oracle never raises for a sick lab: a check it could not make failed
            return [OracleCheck("oracle", "cluster", False, f"oracle error: {type(e).__name__}: {e}")]

    async def baseline(self, manifest: Manifest) -> dict[str, Any]:
        return await self._oracle(manifest).baseline()

    # -- faults ----------------------------------------------------------------------------------

    async def plan_fault(self, manifest: Manifest, kind: str, target: str | None, params: dict[str, Any],
                         rng: random.Random, name: str) -> FaultPlan:
        if kind not in faults.KINDS:
            raise ValueError(f"unknown fault kind {kind!r} for ratelimiter; kinds: {', '.join(faults.KINDS)}")
        lab = _lab(manifest.admin["lab_dir"])
        if target is None and faults.KINDS[kind].target in ("node", "links"):
            running = [n for n in lab.node_ids() if lab.node_process(n)["state"] == processes.RUNNING]
            if not running:
                raise RuntimeError("no node is running: nothing to inject into")
            target = rng.choice(running)
        record = await _run_sync(faults.plan, lab, kind, target, params, name)
        return FaultPlan(kind=kind, target=record["target"], params=record["params"],
                         undo={"mechanism": "ratelimiter", "lab_dir": str(lab.run_dir), "record": record},
                         affected=_affected(record, lab.node_ids()), name=name,
                         detail=f"{kind} on {record['target']}")

    async def apply_fault(self, manifest: Manifest, plan: FaultPlan) -> dict[str, Any]:
        lab = _lab(plan.undo["lab_dir"])
        record = plan.undo["record"]
        try:
            await _run_sync(faults.apply, lab, record)  # fills record's done/injected_at in plan.undo
        except faults.FaultError as e:
            raise RuntimeError(str(e)) from e
        return {"done": record["done"], "injected_at": record["injected_at"], "facts": record["facts"]}

    async def fault_effect(self, manifest: Manifest, plan: FaultPlan) -> Verdict:
        lab = _lab(plan.undo["lab_dir"])
        record = plan.undo["record"]
        return await _run_sync(wait, lambda: fault_checks.effect(lab, record), EFFECT_TIMEOUT_S)

    async def revert_fault(self, undo: dict[str, Any]) -> str:
        lab, up = _lab_if_up(undo["lab_dir"])
        report = await _run_sync(faults.revert, lab, undo["record"], not up)
        if not report["ok"]:
            failed = "; ".join(f"{f['step'].get('op')}: {f['reason']}" for f in report["failed"])
            raise RuntimeError(f"could not revert {undo['record']['kind']}: {failed}")
        parts = report["undone"] + [f"(already) {t}" for t in report["nothing_to_do"]]
        return f"reverted {undo['record']['kind']} on {undo['record']['target']}: " + "; ".join(parts)

    async def fault_reverted(self, undo: dict[str, Any]) -> Verdict:
        lab, up = _lab_if_up(undo["lab_dir"])
        record = undo["record"]
        return await _run_sync(wait, lambda: fault_checks.reverted(lab if up else None, record),
                               REVERT_CHECK_TIMEOUT_S)

    # -- the workload ----------------------------------------------------------------------------

    async def workload_start(self, manifest: Manifest, spec: WorkloadSpec) -> None:
        await _run_sync(_workload_start, manifest, spec)

    async def workload_read(self, manifest: Manifest, after_wall: float | None) -> list[WorkloadBucket]:
        lines = await _run_sync(workload_process.read, Path(manifest.admin["workload_dir"]), after_wall)
        return [WorkloadBucket(**line) for line in lines]

    async def workload_stop(self, manifest: Manifest) -> None:
        await _run_sync(workload_process.stop, Path(manifest.admin["workload_dir"]))


ADAPTER = RateLimiterEvaluation()


# -- helpers (synchronous: run in a thread) ------------------------------------------------------

def _manifest_shell(trial_dir: Path, request: LabRequest) -> Manifest:
    lab_dir = trial_dir
    return Manifest(subject=SUBJECT, block=request.block.to_dict(), trial_dir=str(trial_dir), ident=request.ident,
                    admin={"lab_dir": str(lab_dir), "workload_dir": str(trial_dir / WORKLOAD)},
                    data_dirs=[str(lab_dir)])


def _lab(lab_dir: str) -> RateLimiterLab:
    try:
        return RateLimiterLab.load(lab_dir)
    except LabError as e:
        raise RuntimeError(str(e)) from e


def _lab_if_up(lab_dir: str) -> tuple[RateLimiterLab, bool]:
    lab = open_lab(lab_dir)
    try:
        return lab, lab.state_path.exists() and lab.is_up()
    except LabError:
        return lab, False


def _workload_start(manifest: Manifest, spec: WorkloadSpec) -> None:
    admin = manifest.admin
    params = dict(spec.params)
    argv = [sys.executable, "-m", "subjects.ratelimiter.workload", "--redis", admin["redis_url"],
            "--rate", str(spec.rate_per_s), "--seed", str(spec.seed), "--out", admin["workload_dir"],
            "--slo-ms", str(spec.slo_p99_ms), "--keys", str(int(params.pop("keys", 8))),
            "--max-duration-s", str(float(params.pop("max_duration_s", 1800))),
            "--source-address", admin["workload_address"], "--parent-pid", str(os.getpid())]
    if params:
        raise ValueError(f"unknown ratelimiter workload parameter(s): {', '.join(params)} (known: keys, max_duration_s)")
    for node, url in admin["nodes"].items():
        argv += ["--node", f"{node}={url}"]
    cgroup = None
    if manifest.cgroups and netfault.cgroup_available():
        cgroup = f"{manifest.cgroups[0]}/{WORKLOAD}"
        netfault.cgroup_create(cgroup)
    workload_process.start(Path(admin["workload_dir"]), argv, processes.child_env(), admin["workload_address"], cgroup)


def _teardown(manifest: Manifest) -> list[str]:
    """Stop the workload and the lab, then whatever of the manifest is still there (by identity)."""
    done = []
    stopped = workload_process.stop(Path(manifest.admin.get("workload_dir", Path(manifest.trial_dir) / WORKLOAD)))
    if stopped:
        done.append(stopped)
    lab_dir = manifest.admin.get("lab_dir", manifest.trial_dir)
    lab = open_lab(lab_dir)
    if lab.state_path.exists():
        try:
            report = lab.down()
            done += [f"{s['name']} (pid {s['pid']}) {s['outcome']}" for s in report["stopped"]
                     if s["outcome"] != "not running"]
            if report["unmounted"]:
                done.append(f"unmounted {report['unmounted']}")
            if report["cgroups_removed"]:
                done.append(f"removed cgroup {report['cgroups_removed']}")
        except LabError as e:
            done.append(f"lab down: {e}")
    done += manifest_sweep.sweep(manifest)
    done += _remove_containers(manifest)
    return done


def _engine(manifest: Manifest) -> Any | None:
    """The engine of a Docker trial's lab, or None when it does not answer (a stopped engine runs
    nothing: `lab down` stops the one it started only once no container is left)."""
    try:
        return engine.connect(manifest.extra.get("docker_host"), timeout_s=10)
    except engine.EngineError:
        return None


def _containers(manifest: Manifest, client: Any) -> dict[str, tuple[str, str]]:
    """The manifest's containers that still exist: {name: (id, state)}."""
    found = {}
    for name, cid in (manifest.extra.get("containers") or {}).items():
        state = ctr.state(client, cid)
        if state != ctr.MISSING:
            found[name] = (cid, state)
    return found


def _remove_containers(manifest: Manifest) -> list[str]:
    """Whatever containers of the manifest are still there (a crash between `up` and `down`), by id."""
    if not manifest.extra.get("containers") or (client := _engine(manifest)) is None:
        return []
    try:
        done = []
        for name, (cid, _state) in _containers(manifest, client).items():
            client.containers.get(cid).remove(force=True, v=True)
            done.append(f"removed container {name} ({cid[:12]})")
        return done
    finally:
        client.close()


def _leftovers(manifest: Manifest) -> list[str]:
    workload = workload_process.process(Path(manifest.admin.get("workload_dir", Path(manifest.trial_dir) / WORKLOAD)))
    records = [workload] if workload else []
    lab = open_lab(manifest.admin.get("lab_dir", manifest.trial_dir))
    try:
        if lab.state_path.exists():
            records += list(lab.state.processes.values())
    except LabError:
        pass
    left = manifest_sweep.remaining(manifest, records)
    if manifest.extra.get("containers") and (client := _engine(manifest)) is not None:
        try:
            left += [f"container {name} ({cid[:12]}) {state}" for name, (cid, state) in
                     _containers(manifest, client).items()]
        finally:
            client.close()
    return left

