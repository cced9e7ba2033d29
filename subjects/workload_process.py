"""An evaluation workload as a process of its own, kept in a folder of the trial.

The process is recorded (pid and start time) in ``DIR/process.json`` before anything waits on it,
so that the adapter that started it, or a sweeper after a crash, stops exactly that process and
nothing else. The workload writes its buckets to ``DIR/buckets.jsonl`` (`subjects.openloop`) and
says it started by writing its status file (``DIR/status.json`` unless told otherwise).

    start(dir, argv, env, host, cgroup)    spawn it; wait for status.json (RuntimeError if it dies)
    stop(dir) -> text | None               SIGTERM (it flushes its last buckets), SIGKILL after a grace
    read(dir, after_wall) -> [bucket dict] its finished seconds
    process(dir) -> ProcessRecord | None
"""

from __future__ import annotations

import time
from pathlib import Path

from subjects import processes
from subjects.openloop import BUCKETS_FILE, read_buckets
from subjects.processes import ProcessRecord

PROCESS_FILE, STATUS_FILE = "process.json", "status.json"
START_TIMEOUT_S = 15.0
STOP_GRACE_S = 6.0  # what is in flight finishes (a request timeout, or two with a fail-over)


def process(folder: Path) -> ProcessRecord | None:
    try:
        return ProcessRecord.model_validate_json((folder / PROCESS_FILE).read_text())
    except (OSError, ValueError):
        return None


def start(folder: Path, argv: list[str], env: dict[str, str], host: str, cgroup: str | None = None,
          name: str = "workload", status_file: Path | None = None) -> ProcessRecord:
    """`status_file`: where the workload says it started (default DIR/status.json)."""
    status_file = status_file or folder / STATUS_FILE
    old = process(folder)
    if old is not None and processes.is_live(old):
        raise RuntimeError(f"the workload in {folder} is already running (pid {old.pid})")
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (folder / BUCKETS_FILE, status_file):
        stale.unlink(missing_ok=True)
    rec = processes.spawn(name, argv, folder / f"{name}.log", env=env, host=host, cgroup=cgroup)
    (folder / PROCESS_FILE).write_text(rec.model_dump_json())
    deadline = time.monotonic() + START_TIMEOUT_S
    while not status_file.exists():
        if not processes.is_live(rec):
            raise RuntimeError(f"the workload exited at once: {processes.log_tail(rec.log)}")
        if time.monotonic() > deadline:
            processes.stop(rec)
            raise RuntimeError(f"the workload did not start within {START_TIMEOUT_S:.0f}s")
        time.sleep(0.05)
    return rec


def stop(folder: Path) -> str | None:
    """Stop the recorded workload; None when there was none running."""
    rec = process(folder)
    if rec is None:
        return None
    outcome = processes.stop(rec, STOP_GRACE_S)
    return None if outcome == "not running" else f"workload (pid {rec.pid}) {outcome}"


def read(folder: Path, after_wall: float | None = None) -> list[dict]:
    return read_buckets(folder / BUCKETS_FILE, after_wall)
