"""Wall time of a campaign (default `scenarios/campaigns/ci.yaml`) at parallel 1 and 2.

Runs `operator-tui eval campaign FILE --parallel N` in a fresh store per run and reports, from
the campaign's JSON report:
- wall time (target for ci.yaml at parallel 2: 10 minutes; moonshot 5);
- trials and their mean duration (lab reset to capture, as the trial records it);
- per-trial overhead: wall x parallel / trials - mean trial duration, i.e. the campaign's own cost
  per trial (worker start, dispatch, analysis, reports, idle slots at the end);
- speed-up of parallel 2 over parallel 1 (a ratio within one run of this benchmark).
The campaign's budget is a ceiling for CI, so the benchmark passes --allow-over-budget (at parallel 1
the worst case of ci.yaml exceeds it).

    .venv/bin/python bench/bench_campaign.py [--file scenarios/campaigns/ci.yaml] [--parallel 1 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "operator-tui"


def run_once(file: Path, parallel: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-campaign-") as tmp:
        report = Path(tmp) / "r.json"
        started = time.monotonic()
        proc = subprocess.run([str(BIN), "--db", f"{tmp}/bench.db", "eval", "campaign", str(file), "--parallel",
                               str(parallel), "--allow-over-budget", "--report-json", str(report)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.monotonic() - started
        if not report.exists():
            raise SystemExit(f"campaign failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        data = json.loads(report.read_text())
    durations = [t["duration_s"] for t in data["trials"] if t.get("duration_s") is not None]
    n = len(durations)
    mean = statistics.fmean(durations) if durations else 0.0
    return {
        "parallel": parallel,
        "exit_code": proc.returncode,
        "trials": n,
        "outcomes": {k: v for k, v in data["counts"].items() if v and k != "planned"},
        "wall_s": round(wall, 1),
        "trial_mean_s": round(mean, 1),
        "trial_max_s": round(max(durations), 1) if durations else None,
        "overhead_per_trial_s": round(wall * parallel / n - mean, 2) if n else None,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--file", type=Path, default=ROOT / "scenarios" / "campaigns" / "ci.yaml")
    p.add_argument("--parallel", type=int, nargs="+", default=[1, 2])
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rows = [run_once(args.file, n) for n in args.parallel]
    out: dict[str, Any] = {"file": str(args.file), "runs": rows}
    by = {r["parallel"]: r for r in rows}
    if 1 in by and 2 in by:
        out["speedup_2_over_1"] = round(by[1]["wall_s"] / by[2]["wall_s"], 2)
    if 2 in by:
        out["target_10min_at_parallel_2"] = by[2]["wall_s"] <= 600
        out["moonshot_5min_at_parallel_2"] = by[2]["wall_s"] <= 300
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{'parallel':>8} {'trials':>6} {'wall s':>8} {'trial mean s':>12} {'trial max s':>11} "
          f"{'overhead/trial s':>16}  exit  outcomes")
    for r in rows:
        print(f"{r['parallel']:>8} {r['trials']:>6} {r['wall_s']:>8} {r['trial_mean_s']:>12} {r['trial_max_s']!s:>11} "
              f"{r['overhead_per_trial_s']!s:>16}  {r['exit_code']:>4}  {r['outcomes']}")
    if "speedup_2_over_1" in out:
        print(f"speed-up, parallel 2 over 1: {out['speedup_2_over_1']}x")
    if 2 in by:
        print(f"target (10 min at parallel 2): {'met' if out['target_10min_at_parallel_2'] else 'MISSED'}; "
              f"moonshot (5 min): {'met' if out['moonshot_5min_at_parallel_2'] else 'missed'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
