"""Running a campaign's trials on N slots: one worker process per slot (`eval/slot_worker.py`),
pinned to its own core, fed one trial at a time in the planned order.

- A slot takes the next trial as soon as it is free, until the campaign's wall-time budget is
  spent; trials not started by then are returned as not run (the caller records them `skipped`).
- Infrastructure retries happen only before a fault was injected (the worker says whether one
  was): an invalid first attempt at lab reset, healthy wait or operator start is run again on the
  same slot, at most `infra_retries` times, with the attempt number recorded. A trial that went
  wrong after injection is never re-rolled: that would bias the campaign towards easy draws.
- A worker that dies mid-trial costs that trial (recorded invalid by the caller) and is replaced.
- Cancelled (Ctrl-C, SIGTERM): every worker gets SIGTERM, so its running trial reverts its faults
  and tears its lab down, and is awaited (bounded); then this returns with `cancelled` set, so
  the caller still records what ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.campaign_plan import PlannedTrial

log = logging.getLogger("eval.campaign")

STOP_GRACE_S = 120.0  # a cancelled trial's revert and teardown; bounded by its own deadlines


@dataclass
class Dispatch:
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> last attempt's result
    not_run: list[PlannedTrial] = field(default_factory=list)
    budget_exhausted: bool = False
    cancelled: bool = False


class _Worker:
    def __init__(self, slot: int, cpu: int | None, db: Path, log_path: Path) -> None:
        self.slot, self.cpu, self.db, self.log_path = slot, cpu, db, log_path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        argv = [sys.executable, "-m", "eval.slot_worker", "--db", str(self.db), "--slot", str(self.slot)]
        if self.cpu is not None:
            argv += ["--cpu", str(self.cpu)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        err = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
                # its own process group: a Ctrl-C in the terminal reaches the coordinator, which
                # stops the workers in order instead of all at once mid-write
                start_new_session=True,
            )
        finally:
            os.close(err)

    async def run(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """Send one job; its result, or None when the worker died."""
        if self.proc is None or self.proc.returncode is not None:
            await self.start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            await self.proc.stdin.drain()
            line = await self.proc.stdout.readline()
        except (BrokenPipeError, ConnectionResetError):
            line = b""
        if not line:
            with contextlib.suppress(ProcessLookupError):
                await asyncio.wait_for(self.proc.wait(), 10)
            return None
        return json.loads(line)

    async def stop(self, *, cancel: bool) -> None:
        p = self.proc
        if p is None or p.returncode is not None:
            return
        if cancel:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        elif p.stdin is not None:
            p.stdin.close()
        try:
            await asyncio.wait_for(p.wait(), STOP_GRACE_S if cancel else 30)
        except TimeoutError:
            log.error("slot %d: worker %d did not stop; killing it", self.slot, p.pid)
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            await p.wait()


def cpus_for(parallel: int) -> list[int | None]:
    """Slot k runs on core k (modulo the cores this process may use); no pinning with more slots
    than cores, where pinning would only stack slots on the same cores unevenly."""
    if not hasattr(os, "sched_getaffinity"):
        return [None] * parallel
    n = len(os.sched_getaffinity(0))
    return [k if parallel <= n else None for k in range(parallel)]


async def dispatch(
    todo: list[PlannedTrial],
    *,
    parallel: int,
    db: Path,
    log_dir: Path,
    budget_s: float,
    infra_retries: int,
    make_job: Callable[[PlannedTrial, int, int], dict[str, Any]],
    on_start: Callable[[int, PlannedTrial, int], Awaitable[None] | None] | None = None,
    on_result: Callable[[int, PlannedTrial, dict[str, Any]], Awaitable[None] | None] | None = None,
) -> Dispatch:
    """Run `todo` in order on `parallel` slots. make_job(trial, attempt, slot) builds the job a
    worker receives; on_start / on_result are told about every attempt."""
    out = Dispatch()
    queue = list(todo)
    deadline = time.monotonic() + budget_s
    workers = [_Worker(k, cpu, db, log_dir / f"slot{k}.log") for k, cpu in enumerate(cpus_for(parallel))]

    async def call(cb: Callable[..., Any] | None, *args: Any) -> None:
        if cb is not None:
            r = cb(*args)
            if asyncio.iscoroutine(r):
                await r

    async def slot_loop(w: _Worker) -> None:
        while queue:
            if time.monotonic() >= deadline:
                out.budget_exhausted = True
                return
            trial = queue.pop(0)
            attempt = 1
            while True:
                await call(on_start, w.slot, trial, attempt)
                result = await w.run(make_job(trial, attempt, w.slot))
                if result is None:
                    result = {"key": trial.key, "outcome": "invalid", "injected": None,
                              "error": {"type": "worker_died", "message": f"the slot {w.slot} worker exited mid-trial"
                                        f" (log: {w.log_path})"}}
                result["attempt"] = attempt
                out.results[trial.key] = result
                await call(on_result, w.slot, trial, result)
                retry = (result.get("outcome") == "invalid" and result.get("injected") is False
                         and attempt <= infra_retries and time.monotonic() < deadline)
                if not retry:
                    break
                attempt += 1

    tasks = [asyncio.create_task(slot_loop(w)) for w in workers]
    try:
        await asyncio.gather(*tasks)
    except asyncio.CancelledError:
        # stop here, but let the caller record what ran and write its reports
        out.cancelled = True
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*(w.stop(cancel=True) for w in workers), return_exceptions=True)
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if not out.cancelled:
            await asyncio.gather(*(w.stop(cancel=False) for w in workers), return_exceptions=True)
        out.not_run = [t for t in todo if t.key not in out.results]
    return out
