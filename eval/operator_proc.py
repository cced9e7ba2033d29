"""The variant's operator in its own process: `operator-tui run --headless` with a config file
written into the trial's folder, attached to the trial's run (so every ticket, action and audit
event it writes carries that run)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import tomli_w

from subjects.evaluation import ProcessRef, same_process, signal_process

CONFIG_FILE = "operator.toml"
LOG_FILE = "operator.log"


def write_config(folder: Path, subject: str, section: dict[str, Any], settings: dict[str, Any]) -> Path:
    """The operator's whole configuration for this trial (nothing from the harness's own
    environment or config file reaches it)."""
    data = {**settings, "subject": subject, subject: section}
    path = folder / CONFIG_FILE
    path.write_text(tomli_w.dumps(_without_none(data)))
    return path


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


def operator_env() -> dict[str, str]:
    """The harness's environment less every OPERATOR_TUI_* variable (the config file says it all);
    ANTHROPIC_* stays, so a Claude variant reaches its API."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("OPERATOR_TUI_")}


def start_operator(folder: Path, config: Path, db: Path, run_id: int) -> ProcessRef:
    argv = [sys.executable, "-m", "operator_tui", "run", "--headless", "--config", str(config), "--db", str(db),
            "--attach-run", str(run_id)]
    with open(folder / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                                env=operator_env())
    return ProcessRef.of("operator", proc.pid, argv)


def exit_status(ref: ProcessRef) -> int | None:
    """The operator's exit status once it has exited (reaped here), else None."""
    try:
        pid, status = os.waitpid(ref.pid, os.WNOHANG)
    except ChildProcessError:
        return None if ref.alive() else -1
    if pid == 0:
        return None
    return os.waitstatus_to_exitcode(status)


async def stop_operator(ref: ProcessRef, grace_s: float = 10.0) -> str:
    """SIGTERM (the operator closes its run's work cleanly), then SIGKILL after the grace."""
    return await asyncio.to_thread(_stop, ref, grace_s)


def _stop(ref: ProcessRef, grace_s: float) -> str:
    if not same_process(ref.pid, ref.start_time):
        return "the operator had already exited"
    signal_process(ref.pid, ref.start_time, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if exit_status(ref) is not None or not ref.alive():
            return "the operator stopped on SIGTERM"
        time.sleep(0.05)
    signal_process(ref.pid, ref.start_time, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and exit_status(ref) is None and ref.alive():
        time.sleep(0.05)
    return f"the operator ignored SIGTERM for {grace_s:g} s and was killed"


def log_tail(folder: Path, lines: int = 40) -> str:
    try:
        return "\n".join((folder / LOG_FILE).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
