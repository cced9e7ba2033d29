"""Helpers for the campaign tests: small campaign files with short windows, the CLI, and the
check that nothing is left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from subjects.evaluation import same_process

CLI = [str(Path(sys.executable).parent / "operator-tui")]

# Short windows: a simulator trial takes about 15 s, a rate limiter trial about 30 s.
HEADER = """\
version: 1
name: {name}
seed: {seed}
seeds: {seeds}
parallel: {parallel}
infra_retries: 1
budget: {{campaign_wall_s: {budget}, max_invalid_fraction: 0.5}}
defaults:
  timeouts: {{lab_reset: 20, healthy: 20, start: 15, inject: 10, effect: 10, quiesce: 10,
             revert_per_fault: 8, capture: 15}}
  pre_window_s: 2
  inject_jitter_s: [0, 0.5]
  observe_budget_s: {observe}
  oracle: {{check_interval_s: 1.0, clean_checks: 2, hold_s: 2}}
stats: {{bootstrap_resamples: 1000}}
variants:
  - {{name: baseline, kind: baseline}}
  - {{name: embedded, kind: agent, diagnoser: embedded}}
"""


def campaign_file(folder: Path, body: str, *, name: str = "t", seed: int = 1, seeds: int = 1, parallel: int = 2,
                  budget: float = 3600, observe: float = 20) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(HEADER.format(name=name, seed=seed, seeds=seeds, parallel=parallel, budget=budget,
                                  observe=observe) + textwrap.dedent(body))
    return path


def cli(*args: str, db: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--db", str(db), *args], capture_output=True, text=True, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def processes_using(folder: Path) -> list[str]:
    """Processes with a file open under `folder` (a lab's log, a trial's folder): what a lab that
    was never recorded would leave running."""
    prefix = str(folder.resolve())
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            targets = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        if any(t.startswith(prefix) for t in targets):
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ")[:200]
            found.append(f"pid {proc.name}: {argv!r}")
    return found


def assert_nothing_left(db: Path) -> None:
    """`eval cleanup` finds nothing to do, no process any trial recorded still runs, and no
    process holds a file of the store's folder open."""
    result = cli("eval", "cleanup", "--json", db=db)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["nothing_to_do"], report
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        for (raw,) in conn.execute("SELECT lab_manifest_json FROM eval_trials WHERE lab_manifest_json IS NOT NULL"):
            for p in json.loads(raw).get("processes", []):
                assert not same_process(p["pid"], p["start_time"]), f"{p['name']} (pid {p['pid']}) still runs"
        for (raw,) in conn.execute("SELECT metrics_json FROM eval_trials"):
            op = (json.loads(raw or "{}").get("operator") or {})
            if op.get("pid"):
                assert not same_process(op["pid"], op["start_time"]), f"operator pid {op['pid']} still runs"
    finally:
        conn.close()
    assert processes_using(db.parent) == []
