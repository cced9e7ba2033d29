"""Faults for the etcd lab (through `subjects.etcd.faults`), for `operator-tui chaos`, the evaluation
harness and the demo.

The lab's own fault record (its exact undo steps: member, pid and start time, chain name, filler
path, strace pid ...) is kept whole in ``FaultRecord.undo`` with the lab folder, so reverting
needs nothing but the record: any process can revert a fault another one injected, and reverting
twice does nothing the second time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from subjects.base import FaultRecord
from subjects.etcd import faults
from subjects.etcd.lab import EtcdLab, LabError, open_lab
from subjects.plugin import PluginError, SubjectContext


class ChaosError(PluginError):
    pass


def kinds() -> dict[str, str]:
    out = {}
    for k in faults.describe_kinds():
        params = ", ".join(k["params"].get("properties") or {})
        target = "--target MEMBER or leader (default: a follower)"
        if k["kind"] == "quota_fill":
            target = "--target MEMBER to send the puts to (default: the leader)"
        out[k["kind"]] = f"{k['description']}; {target}" + (f"; params: {params}" if params else "")
    return out


def _lab(lab_dir: str | None) -> EtcdLab:
    if not lab_dir:
        raise ChaosError("no lab folder given: etcd faults act on the local lab (`operator-tui lab up etcd`)")
    lab = open_lab(lab_dir)
    try:
        lab.state  # noqa: B018 - raises LabError when no lab is up there
    except LabError as e:
        raise ChaosError(str(e)) from e
    return lab


async def inject(options: dict[str, Any], kind: str, target: str | None, params: dict[str, Any]) -> FaultRecord:
    if kind not in faults.KINDS:
        raise ChaosError(f"unknown fault {kind!r} for etcd; known: {', '.join(faults.KINDS)}")
    lab = _lab(options.get("lab_dir"))
    if not lab.is_up():
        raise ChaosError(f"the etcd lab in {lab.run_dir} is not running (`operator-tui lab up etcd`)")
    try:
        record = await asyncio.to_thread(faults.inject, lab, kind, target, params)
    except faults.FaultError as e:
        raise ChaosError(str(e)) from e
    except LabError as e:
        raise ChaosError(f"{kind}: {e}") from e
    detail = f"{kind} on {record['target']}: " + "; ".join(record["done"])
    if record["target_chosen"] != "given":
        detail += f" (target {record['target_chosen']})"
    return FaultRecord(subject="etcd", kind=kind, target=record["target"], params=record["params"],
                       undo={"lab_dir": str(lab.run_dir), "lab_record": record}, detail=detail)


async def revert(options: dict[str, Any], record: FaultRecord) -> str:
    lab_record = record.undo.get("lab_record")
    if not isinstance(lab_record, dict):
        raise ChaosError(f"fault record has no lab undo steps: {record.undo}")
    lab_dir = record.undo.get("lab_dir") or options.get("lab_dir")
    if not lab_dir:
        raise ChaosError("the fault record names no lab folder to revert in")
    lab = open_lab(lab_dir)
    if not lab.state_path.exists():
        # `lab down` stopped every process, deleted every chain and unmounted every disk it knew of.
        return f"the lab in {Path(lab_dir)} is down: everything this {record.kind} touched is gone, nothing to undo"
    report = await asyncio.to_thread(faults.revert, lab, lab_record)
    parts = []
    if report["undone"]:
        parts.append("undone: " + "; ".join(report["undone"]))
    if report["nothing_to_do"]:
        parts.append("already undone: " + "; ".join(report["nothing_to_do"]))
    if not report["ok"]:
        failed = "; ".join(f"{f['step'].get('op')}: {f['reason']}" for f in report["failed"])
        raise ChaosError(f"could not revert {record.kind} on {record.target}: {failed}"
                         + (f" ({'; '.join(parts)})" if parts else ""))
    return f"reverted {record.kind} on {record.target}: " + ("; ".join(parts) or "nothing to do")


def options(section: Any, ctx: SubjectContext) -> dict[str, Any]:
    return {"lab_dir": str(ctx.lab_dir)}


def of_lab(lab_dir: Path, record: FaultRecord) -> bool:
    return record.undo.get("lab_dir") == str(EtcdLab(lab_dir).run_dir)  # inject records the lab's own run_dir
