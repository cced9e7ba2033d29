"""Wall time of each phase of a simulator store-kill trial fixed by the embedded agent.

Targets: the whole trial <= 45 s, harness overhead (everything but the observe window) <= 10 s,
TTD median <= 1.5 s. Trials run exactly as `operator-tui eval run` runs them (the operator in its
own process, the lab on a slot's address block), with the CLI's default timings.

    .venv/bin/python bench/bench_eval.py [--trials 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import table
from eval.adhoc import AdhocRequest, run_adhoc
from eval.spec import EMBEDDED, Timings
from operator_tui.store import Store

TARGETS = {"trial_s": 45.0, "overhead_s": 10.0, "ttd_median_s": 1.5}
PHASES = ["lab_reset", "healthy", "operator_start", "workload_start", "pre_window", "inject", "observe", "quiesce",
          "revert", "capture"]


async def main(trials: int, slot: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        store = await Store.open(Path(tmp) / "bench.db")
        try:
            req = AdhocRequest(subject="tikv", chaos="kill_store", variant=EMBEDDED, trials=trials, seed=42,
                               timings=Timings(pre_window_s=5.0, observe_budget_s=60.0, hold_s=5.0, clean_checks=3),
                               slot=slot, artifacts_root=Path(tmp))
            _, results = await run_adhoc(store, req)
        finally:
            await store.close()
    rows = []
    for t in results:
        took = {p["phase"]: round(p["end_s"] - p["start_s"], 2) for p in t.phases_json if p["end_s"] is not None}
        total = round(t.phases_json[-1]["end_s"] - t.phases_json[0]["start_s"], 2)
        rows.append({"trial": t.id, "outcome": t.outcome, "phases": took, "total_s": total,
                     "overhead_s": round(total - took.get("observe", 0.0), 2), "ttd_s": t.metrics_json.get("ttd_s"),
                     "ttm_s": t.metrics_json.get("ttm_s")})
    ttds = [r["ttd_s"] for r in rows if r["ttd_s"] is not None]
    figures = {"trial_s": max(r["total_s"] for r in rows), "overhead_s": max(r["overhead_s"] for r in rows),
               "ttd_median_s": round(statistics.median(ttds), 3) if ttds else None}
    return {"trials": rows, "figures": figures, "targets": TARGETS,
            "met": {k: v is not None and v <= TARGETS[k] for k, v in figures.items()}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--slot", type=int, default=200, help="address block 127.(K+10).0.0/24 (default: 200)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(main(args.trials, args.slot))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(table(["trial", "outcome", *PHASES, "total", "overhead", "ttd", "ttm"],
                    [[r["trial"], r["outcome"], *(r["phases"].get(p, "-") for p in PHASES), r["total_s"],
                      r["overhead_s"], r["ttd_s"], r["ttm_s"]] for r in result["trials"]]))  # type: ignore[union-attr]
        print()
        for key, value in result["figures"].items():  # type: ignore[union-attr]
            target = TARGETS[key]
            print(f"{key:<14} {value!s:>8}  target <= {target:g}  {'ok' if result['met'][key] else 'MISSED'}")  # type: ignore[index]
