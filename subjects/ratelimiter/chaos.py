"""Faults for the rate limiter lab (through `subjects.ratelimiter.faults`), for `operator-tui chaos`.

The lab's own fault record (its exact undo steps) is kept whole in ``FaultRecord.undo`` together
with the lab folder, so that reverting needs nothing but the record: any process can revert a
fault another one injected.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from subjects.base import FaultRecord
from subjects.plugin import PluginError, SubjectContext
from subjects.ratelimiter import faults
from subjects.ratelimiter.lab import LabError, RateLimiterLab, open_lab


class ChaosError(PluginError):
    pass


def kinds() -> dict[str, str]:
    out = {}
    for k in faults.describe_kinds():
        params = ", ".join(f"{name}" for name in (k["params"].get("properties") or {}))
        target = {"node": "--target NODE_ID (default: first running node)", "redis": "no target (Redis)",
                  "links": "--target NODE_ID or * (default: every link)"}[k["target"]]
        out[k["kind"]] = f"{k['description']}; {target}" + (f"; params: {params}" if params else "")
    return out


def _lab(lab_dir: str | None) -> RateLimiterLab:
    if not lab_dir:
        raise ChaosError("no lab folder given: rate limiter faults act on the local lab (`operator-tui lab up "
                         "ratelimiter`)")
    try:
        return RateLimiterLab.load(lab_dir)
    except LabError as e:
        raise ChaosError(str(e)) from e


async def inject(options: dict[str, Any], kind: str, target: str | None, params: dict[str, Any]) -> FaultRecord:
    if kind not in faults.KINDS:
        raise ChaosError(f"unknown fault {kind!r} for ratelimiter; known: {', '.join(faults.KINDS)}")
    lab = _lab(options.get("lab_dir"))
    if not lab.is_up():
        raise ChaosError(f"the rate limiter lab in {lab.run_dir} is not running (`operator-tui lab up ratelimiter`)")
    try:
        record = await asyncio.to_thread(faults.inject, lab, kind, target, params)
    except faults.FaultError as e:
        raise ChaosError(str(e)) from e
    except LabError as e:
        raise ChaosError(f"{kind}: {e}") from e
    detail = f"{kind} on {record['target']}: " + "; ".join(record["done"])
    if record.get("target_chosen", "given") != "given":
        detail += f" (target {record['target_chosen']})"
    return FaultRecord(subject="ratelimiter", kind=kind, target=record["target"], params=record["params"],
                       undo={"lab_dir": str(lab.run_dir), "lab_record": record}, detail=detail)


async def revert(options: dict[str, Any], record: FaultRecord) -> str:
    lab_record = record.undo.get("lab_record")
    if not isinstance(lab_record, dict):
        raise ChaosError(f"fault record has no lab undo steps: {record.undo}")
    lab_dir = record.undo.get("lab_dir") or options.get("lab_dir")
    if not lab_dir:
        raise ChaosError("the fault record names no lab folder to revert in")
    lab = open_lab(lab_dir)
    if not lab.state_path.exists() or not lab.is_up():
        # `lab down` stopped every process the fault touched and unmounted Redis's disk; only what
        # the fault put on the host itself (an iptables chain) can outlive the lab.
        report = await asyncio.to_thread(faults.revert, lab, lab_record, True)
        if report["ok"] and not report["undone"]:
            return (f"the lab in {Path(lab_dir)} is down: every process and the Redis data this {record.kind} "
                    "touched are gone, nothing left to undo")
    else:
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
    return record.undo.get("lab_dir") == str(RateLimiterLab(lab_dir).run_dir)  # inject records the lab's own run_dir
