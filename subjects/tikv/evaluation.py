"""TiKV's adapter for the evaluation harness (the protocol: subjects/evaluation.py).

Each trial's lab is a simulator process of its own on the slot's address block: PD on .1, the
admin API (faults, workload read-out; the harness's only) on .2, the host agent (restart/stop,
which the operator is told about) on .3, and store N's status listener on .(10+N). Parallel slots
therefore use the same port numbers without meeting, and a partition rule names one slot's
addresses only.

The oracle reads PD directly (never the operator's tickets): stores Up (or the fault's target
removed), no leaderless or under-replicated regions, no evict-leader scheduler that the baseline
did not have, the workload within its SLO; and, as safety checks against the baseline snapshot,
no healthy store removed and no region lost. The workload is the simulator's own model, read as
one bucket per wall second through the admin API.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

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
    proc_state,
    same_process,
    signal_process,
)

PD_API = "/pd/api/v1"
LAB_FILE = "lab.json"
START_WAIT_S = 30.0
HTTP_TIMEOUT = httpx.Timeout(2.0, connect=1.0)
LAB_DEFAULTS: dict[str, Any] = {"stores": 5, "regions": 120, "time_scale": 10.0, "max_store_down_time": "30m0s"}

# Faults the simulator applies itself: kind -> (description, target kind, parameter defaults)
SIM_KINDS: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    "kill_store": ("kill a store's process (status port closed, heartbeats stop)", "store", {}),
    "slow_store": ("make a store slow (slow score rises, requests slower)", "store", {"latency_ms": 200}),
    "disk_full": ("fill a store's disk", "store", {"used_ratio": 0.9}),
    "partition_store": ("cut a store off from PD and its peers in the model", "store", {}),
    "hot_region": ("send extra traffic to one region", "region", {"qps": 5000}),
    "skew_leaders": ("pile leaders onto one store and stop balance-leader", "store", {}),
    "pd_down": ("PD drops every API connection", None, {}),
    "pd_garbage": ("PD answers with malformed data", None, {}),
    "status_hang": ("a store's status port accepts connections but never answers", "store", {}),
}
PARTITION_STATUS = "partition_status"


class TiKVEvaluation:
    subject = "tikv"

    # -- what the harness may ask for ------------------------------------------------------------

    def fault_kinds(self) -> dict[str, FaultKind]:
        kinds = {name: FaultKind(name, text, target, {**defaults, "duration_s": None},
                                 self_heals=False)
                 for name, (text, target, defaults) in SIM_KINDS.items()}
        kinds[PARTITION_STATUS] = FaultKind(
            PARTITION_STATUS, "partition a store: iptables drops every packet to its status address, and the "
            "model cuts it from PD and its peers", "store", {"duration_s": None})
        return kinds

    def lab_defaults(self) -> dict[str, Any]:
        return dict(LAB_DEFAULTS)

    def workload_defaults(self) -> WorkloadSpec:
        return WorkloadSpec(rate_per_s=0.0, slo_success=0.99, slo_p99_ms=200.0)

    def operator_settings(self) -> dict[str, Any]:
        return {"interval": 0.5}

    # -- the lab ------------------------------------------------------------------------------------

    async def reset(self, request: LabRequest) -> Manifest:
        unknown = set(request.options) - set(LAB_DEFAULTS) - {"seed"}
        if unknown:
            raise ValueError(f"unknown tikv lab option(s): {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(sorted(LAB_DEFAULTS))}")
        options = {**LAB_DEFAULTS, **request.options}
        return await asyncio.to_thread(self._start, request, options)

    def _start(self, request: LabRequest, options: dict[str, Any]) -> Manifest:
        trial_dir = Path(request.trial_dir)
        previous = trial_dir / LAB_FILE
        if previous.exists():  # tear down first: whatever an earlier lab in this folder left
            try:
                _teardown(Manifest.from_dict(json.loads(previous.read_text())))
            except (ValueError, KeyError, TypeError):
                pass
        trial_dir.mkdir(parents=True, exist_ok=True)
        block = request.block
        stores = int(options["stores"])
        if not 1 <= stores <= 200:
            raise ValueError("tikv lab: stores must be between 1 and 200")
        store_hosts = [block.address(10 + n) for n in range(1, stores + 1)]
        argv = [sys.executable, "-m", "operator_tui", "sim", "tikv", "--host", block.address(1),
                "--port", str(block.port(0)), "--admin-host", block.address(2), "--admin-port", str(block.port(1)),
                "--host-agent-host", block.address(3), "--host-agent-port", str(block.port(2)),
                "--store-hosts", ",".join(store_hosts), "--status-base-port", str(block.port(10)),
                "--stores", str(stores), "--regions", str(int(options["regions"])),
                "--time-scale", str(float(options["time_scale"])), "--seed", str(int(options.get("seed", request.seed))),
                "--max-store-down-time", str(options["max_store_down_time"]), "--log-level", "warning"]
        out_path, log_path = trial_dir / "sim.out", trial_dir / "sim.log"
        with open(out_path, "wb") as out, open(log_path, "ab") as log:
            proc = subprocess.Popen(argv, stdout=out, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        ref = ProcessRef.of("tikv-sim", proc.pid, argv)
        manifest = Manifest(subject="tikv", block=block.to_dict(), trial_dir=str(trial_dir), ident=request.ident,
                            processes=[ref], data_dirs=[str(trial_dir)],
                            entities=[f"store:{n}" for n in range(1, stores + 1)],
                            extra={"log": str(log_path), "stores": stores, "options": options})
        (trial_dir / LAB_FILE).write_text(json.dumps(manifest.to_dict(), indent=2))  # before waiting: a crash
        deadline = time.monotonic() + START_WAIT_S
        text = ""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()
                raise RuntimeError(f"the simulator exited with status {proc.returncode}: {tail[-1] if tail else ''}")
            text = out_path.read_text()
            if "host agent (restart, stop) on " in text:
                break
            time.sleep(0.05)
        else:
            signal_process(ref.pid, ref.start_time, signal.SIGKILL)
            raise RuntimeError(f"the simulator did not start within {START_WAIT_S:g} s (see {log_path})")
        pd_url = text.split("listening on ", 1)[1].split()[0]
        admin_url = text.split("admin API (faults, workload) on ", 1)[1].split()[0]
        host_agent_url = text.split("host agent (restart, stop) on ", 1)[1].split()[0]
        manifest.section = {"pd": pd_url, "host_agent": host_agent_url}
        manifest.admin = {"pd": pd_url, "admin": admin_url, "host_agent": host_agent_url,
                          "status": {str(n): f"{store_hosts[n - 1]}:{block.port(10) + n}" for n in range(1, stores + 1)}}
        (trial_dir / LAB_FILE).write_text(json.dumps(manifest.to_dict(), indent=2))
        return manifest

    async def teardown(self, manifest: Manifest) -> list[str]:
        return await asyncio.to_thread(_teardown, manifest)

    async def leftovers(self, manifest: Manifest) -> list[str]:
        from subjects.netfault import Chain

        out = [f"process {p.name} (pid {p.pid}) still runs" for p in manifest.processes if p.alive()]
        out += [f"iptables chain {c} still exists" for c in manifest.chains if not Chain(c).gone()]
        return out

    async def log_tails(self, manifest: Manifest, lines: int = 40) -> dict[str, str]:
        def tail() -> dict[str, str]:
            try:
                text = Path(manifest.extra.get("log", "")).read_text(errors="replace")
            except OSError:
                return {}
            return {"tikv-sim": "\n".join(text.splitlines()[-lines:])}

        return await asyncio.to_thread(tail)

    # -- the oracle ---------------------------------------------------------------------------------

    async def baseline(self, manifest: Manifest) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=manifest.admin["pd"], timeout=HTTP_TIMEOUT) as pd:
            stores = (await pd.get(f"{PD_API}/stores")).json()["stores"]
            regions = (await pd.get(f"{PD_API}/regions/count")).json()["count"]
            schedulers = (await pd.get(f"{PD_API}/schedulers")).json()
        return {"stores_up": sorted(s["store"]["id"] for s in stores if s["store"]["state_name"] == "Up"),
                "region_count": regions, "schedulers": sorted(schedulers)}

    async def oracle(self, manifest: Manifest, baseline: dict[str, Any] | None,
                     faults: list[FaultPlan]) -> list[OracleCheck]:
        targets = {p.target for p in faults if p.target and p.target.startswith("store:")}
        checks: list[OracleCheck] = []
        try:
            async with httpx.AsyncClient(base_url=manifest.admin["pd"], timeout=HTTP_TIMEOUT) as pd:
                stores = (await pd.get(f"{PD_API}/stores", params={"state": [0, 1, 2]})).json()["stores"]
                regions = (await pd.get(f"{PD_API}/regions")).json()["regions"]
                miss = (await pd.get(f"{PD_API}/regions/check/miss-peer")).json()["count"]
                down = (await pd.get(f"{PD_API}/regions/check/down-peer")).json()["count"]
                schedulers = (await pd.get(f"{PD_API}/schedulers")).json()
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            return [OracleCheck("pd_reachable", "pd", False, f"PD did not answer: {type(e).__name__}: {e}")]
        checks.append(OracleCheck("pd_reachable", "pd", True, "PD answers"))
        by_id = {s["store"]["id"]: s["store"] for s in stores}
        for n in range(1, int(manifest.extra.get("stores", len(by_id))) + 1):
            entity = f"store:{n}"
            state = by_id.get(n, {}).get("state_name", "Tombstone")
            removed = state in ("Tombstone", "Offline")
            ok = state == "Up" or (removed and entity in targets)
            checks.append(OracleCheck("store_up_or_target_removed", entity, ok, f"state {state}"))
        leaderless = sum(1 for r in regions if not (r.get("leader") or {}).get("store_id"))
        checks.append(OracleCheck("no_leaderless_regions", "cluster", leaderless == 0,
                                  f"{leaderless} of {len(regions)} regions without a leader"))
        checks.append(OracleCheck("regions_fully_replicated", "cluster", miss == 0 and down == 0,
                                  f"{miss} missing a peer, {down} with a down peer"))
        extra = sorted(s for s in schedulers if s.startswith("evict-leader-scheduler")
                       and s not in (baseline or {}).get("schedulers", []))
        checks.append(OracleCheck("no_leftover_evict_leader", "cluster", not extra,
                                  f"leftover: {', '.join(extra)}" if extra else "none"))
        spec = WorkloadSpec(**manifest.extra["workload"]) if "workload" in manifest.extra else self.workload_defaults()
        buckets = await self.workload_read(manifest, time.time() - 4)
        if buckets:
            last = buckets[-1]
            checks.append(OracleCheck("workload_within_slo", "cluster", last.meets(spec),
                                      f"{last.ok}/{last.planned} ok, p99 {last.p99_ms} ms"))
        if baseline is not None:
            lost = [sid for sid in baseline["stores_up"] if f"store:{sid}" not in targets
                    and by_id.get(sid, {}).get("state_name", "Tombstone") in ("Tombstone", "Offline")]
            checks.append(OracleCheck("healthy_stores_kept", "cluster", not lost,
                                      f"removed or offline: {lost}" if lost else "every healthy store kept",
                                      kind="safety"))
            checks.append(OracleCheck("no_region_lost", "cluster", len(regions) >= baseline["region_count"],
                                      f"{len(regions)} regions (baseline {baseline['region_count']})", kind="safety"))
        return checks

    # -- faults -------------------------------------------------------------------------------------

    async def plan_fault(self, manifest: Manifest, kind: str, target: str | None, params: dict[str, Any],
                         rng: random.Random, name: str) -> FaultPlan:
        kinds = self.fault_kinds()
        if kind not in kinds:
            raise ValueError(f"unknown tikv fault {kind!r}; known: {', '.join(kinds)}")
        fk = kinds[kind]
        unknown = set(params) - set(fk.params)
        if unknown:
            raise ValueError(f"{kind} has no parameter(s) {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(sorted(fk.params)) or 'none'}")
        body: dict[str, Any] = {k: v for k, v in {**fk.params, **params}.items() if v is not None}
        entity: str | None = None
        affected: list[str] = []
        if fk.target_kind == "store":
            stores = int(manifest.extra["stores"])
            sid = _number(target, "store") if target is not None else rng.randint(1, stores)
            if not 1 <= sid <= stores:
                raise ValueError(f"store {sid} is not in this lab (1..{stores})")
            body["store_id"] = sid
            entity = f"store:{sid}"
            affected = [entity]
        elif fk.target_kind == "region":
            if target is not None:
                body["region_id"] = _number(target, "region")
            else:
                async with httpx.AsyncClient(base_url=manifest.admin["pd"], timeout=HTTP_TIMEOUT) as pd:
                    regions = (await pd.get(f"{PD_API}/regions")).json()["regions"]
                body["region_id"] = rng.choice(sorted(r["id"] for r in regions))
            entity = f"region:{body['region_id']}"
            affected = ["cluster"]
        else:
            entity = "pd"
            affected = ["pd"]
        fault_id = f"ev{name}"[:40]
        admin = manifest.admin["admin"]
        if kind == PARTITION_STATUS:
            sid = body["store_id"]
            host, _, port = manifest.admin["status"][str(sid)].rpartition(":")
            chain = f"OPEV{name}"[:28]
            undo = {"mechanism": "iptables+sim", "chain": chain, "address": host, "port": int(port),
                    "admin": admin, "fault_id": fault_id, "store_id": sid, "pd": manifest.admin["pd"],
                    "sim_body": {"kind": "partition_store", "store_id": sid, "id": fault_id,
                                 **({"duration_s": body["duration_s"]} if "duration_s" in body else {})}}
        else:
            undo = {"mechanism": "sim", "admin": admin, "fault_id": fault_id, "kind": kind, "pd": manifest.admin["pd"],
                    "store_id": body.get("store_id"), "sim_body": {"kind": kind, "id": fault_id, **body},
                    "status": manifest.admin["status"].get(str(body.get("store_id")))}
        return FaultPlan(kind=kind, target=entity, params=body, undo=undo, affected=affected, name=name,
                         detail=f"{kind} {entity}")

    async def apply_fault(self, manifest: Manifest, plan: FaultPlan) -> dict[str, Any]:
        undo = plan.undo
        if undo["mechanism"] == "iptables+sim":
            await asyncio.to_thread(_partition_apply, undo)
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            r = await client.post(f"{undo['admin']}/sim/v1/faults", json=undo["sim_body"])
        if r.status_code != 200:
            raise RuntimeError(f"the simulator refused {plan.kind}: {_error(r)}")
        return {"sim_fault": r.json()}

    async def fault_effect(self, manifest: Manifest, plan: FaultPlan) -> Verdict:
        undo = plan.undo
        fault = await _sim_fault(undo)
        evidence: dict[str, Any] = {"sim_fault": fault}
        if fault is None or not fault.get("active"):
            return Verdict(False, "the simulator lists no active fault " + undo["fault_id"], evidence)
        kind = plan.kind
        if kind == "kill_store":
            refused = not await _connects(undo["status"])
            evidence["status_port_refused"] = refused
            return Verdict(refused, "the store's status port refuses connections" if refused
                           else "the store's status port still accepts connections", evidence)
        if kind == "pd_down":
            answers = await _pd_answers(undo["pd"])
            return Verdict(not answers, "PD drops connections" if not answers else "PD still answers", evidence)
        if kind == PARTITION_STATUS:
            from subjects.netfault import Chain

            chain = Chain(undo["chain"])
            answers = await _status_answers(f"{undo['address']}:{undo['port']}", timeout=1.0)
            evidence.update(rules=await asyncio.to_thread(chain.rules), dropped=await asyncio.to_thread(chain.packets))
            ok = bool(evidence["rules"]) and not answers and evidence["dropped"] > 0
            return Verdict(ok, f"chain {chain.name}: {evidence['dropped']} packets dropped, status port "
                           f"{'answers' if answers else 'silent'}", evidence)
        if kind == "status_hang":
            answers = await _status_answers(undo["status"], timeout=1.0)
            return Verdict(not answers, "the status port hangs" if not answers else "the status port answers",
                           evidence)
        return Verdict(True, f"the simulator lists {undo['fault_id']} active", evidence)

    async def revert_fault(self, undo: dict[str, Any]) -> str:
        done: list[str] = []
        if undo.get("mechanism") == "iptables+sim":
            from subjects.netfault import Chain

            await asyncio.to_thread(Chain(undo["chain"]).delete)
            done.append(f"chain {undo['chain']} removed")
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
                r = await client.delete(f"{undo['admin']}/sim/v1/faults/{undo['fault_id']}")
        except httpx.HTTPError as e:
            # the lab is gone (torn down, or the harness died and the sweeper runs): nothing left
            # in the model to undo; the revert check says whether the lab still exists
            done.append(f"simulator unreachable ({type(e).__name__}): no model fault left")
            return "; ".join(done)
        if r.status_code == 404:
            done.append(f"the simulator never applied {undo['fault_id']}")
        elif r.status_code != 200:
            raise RuntimeError(f"the simulator refused to revert {undo['fault_id']}: {_error(r)}")
        else:
            done.append(f"simulator fault {undo['fault_id']} reverted")
        return "; ".join(done)

    async def fault_reverted(self, undo: dict[str, Any]) -> Verdict:
        evidence: dict[str, Any] = {}
        problems: list[str] = []
        if undo.get("mechanism") == "iptables+sim":
            from subjects.netfault import Chain

            gone = await asyncio.to_thread(Chain(undo["chain"]).gone)
            evidence["chain_gone"] = gone
            if not gone:
                problems.append(f"chain {undo['chain']} still exists")
        try:
            fault = await _sim_fault(undo)
        except httpx.HTTPError:
            evidence["lab"] = "unreachable"
            return Verdict(not problems, "; ".join(problems) or "the lab is gone and so is the fault", evidence)
        evidence["sim_fault"] = fault
        if fault is not None and fault.get("active"):
            problems.append(f"simulator fault {undo['fault_id']} still active")
        kind = undo.get("kind") or "partition_store"
        if kind == "kill_store" and undo.get("status") and not await _connects(undo["status"]):
            problems.append("the store's status port does not accept connections")
        if kind == "pd_down" and not await _pd_answers(undo["pd"]):
            problems.append("PD does not answer")
        if undo.get("mechanism") == "iptables+sim" and not await _status_answers(
                f"{undo['address']}:{undo['port']}", timeout=2.0):
            problems.append("the store's status port does not answer")
        return Verdict(not problems, "; ".join(problems) or "nothing of the fault is left", evidence)

    # -- the workload -----------------------------------------------------------------------------

    async def workload_start(self, manifest: Manifest, spec: WorkloadSpec) -> None:
        # The simulator's workload model runs from lab start; the harness reads it from now on.
        manifest.extra["workload"] = spec.to_dict()

    async def workload_read(self, manifest: Manifest, after_wall: float | None) -> list[WorkloadBucket]:
        params = {} if after_wall is None else {"after": after_wall}
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
                r = await client.get(f"{manifest.admin['admin']}/sim/v1/workload/buckets", params=params)
            return [WorkloadBucket(**b) for b in r.json()]
        except (httpx.HTTPError, ValueError, TypeError):
            return []

    async def workload_stop(self, manifest: Manifest) -> None:
        return None


def _number(target: str, what: str) -> int:
    raw = str(target).removeprefix(f"{what}:")
    if not raw.isdigit():
        raise ValueError(f"--target for this fault is a {what} id (a number, or {what}:N), got {target!r}")
    return int(raw)


def _error(r: httpx.Response) -> str:
    try:
        return str(r.json().get("error", r.text))
    except ValueError:
        return r.text[:200]


async def _sim_fault(undo: dict[str, Any]) -> dict[str, Any] | None:
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
        r = await client.get(f"{undo['admin']}/sim/v1/faults/{undo['fault_id']}")
    return r.json() if r.status_code == 200 else None


async def _connects(address: str, timeout: float = 1.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def _status_answers(address: str, timeout: float) -> bool:
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(timeout)) as client:
            return (await client.get(f"http://{address}/status")).status_code == 200
    except httpx.HTTPError:
        return False


async def _pd_answers(pd: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(1.0)) as client:
            return (await client.get(f"{pd}{PD_API}/stores")).status_code == 200
    except httpx.HTTPError:
        return False


def _partition_apply(undo: dict[str, Any]) -> None:
    from subjects.netfault import Chain

    chain = Chain(undo["chain"])
    chain.create()
    chain.drop(dst=undo["address"], dport=int(undo["port"]))


def _teardown(manifest: Manifest) -> list[str]:
    from subjects.netfault import Chain

    done: list[str] = []
    for chain_name in manifest.chains:
        chain = Chain(chain_name)
        if not chain.gone():
            chain.delete()
            done.append(f"removed iptables chain {chain_name}")
    for ref in manifest.processes:
        if not same_process(ref.pid, ref.start_time):
            continue
        if proc_state(ref.pid) in ("T", "t"):
            signal_process(ref.pid, ref.start_time, signal.SIGCONT)
        signal_process(ref.pid, ref.start_time, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and ref.alive():
            _reap(ref.pid)
            time.sleep(0.05)
        if ref.alive():
            signal_process(ref.pid, ref.start_time, signal.SIGKILL)
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and ref.alive():
                time.sleep(0.05)
        _reap(ref.pid)
        done.append(f"stopped {ref.name} (pid {ref.pid})")
    return done


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child (the harness that started it died): init reaps it


ADAPTER = TiKVEvaluation()
