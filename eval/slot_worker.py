"""One trial slot of a campaign, as its own process: `python -m eval.slot_worker --db PATH --slot K
--cpu C`.

The process pins itself to core C first (`os.sched_setaffinity`), so every trial it runs (the lab,
the workload, the operator's own process) inherits that core: two slots on a 2-core machine do
not compete for one core, and a slot effect stays visible in the trial records (the slot is
stored). It then reads jobs from stdin, one JSON object per line, runs each trial through
`eval.campaign_trial.execute` and writes one JSON result per line to stdout. Logs go to stderr
(the campaign sends them to a file). End of input ends the worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import traceback


def pin(cpu: int | None) -> list[int]:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        available = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {available[cpu % len(available)]})
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


async def serve(db: str, slot: int) -> None:
    from eval.campaign_trial import execute
    from operator_tui.store import Store

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM cancels the trial like Ctrl-C does: its own clean-up (revert, teardown) still runs
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    store = await Store.open(db)
    try:
        while True:
            raw = await reader.readline()
            if not raw:
                return
            job = json.loads(raw)
            try:
                result = await execute(store, job, slot)
            except Exception as e:  # the campaign records it as an invalid trial; the slot goes on
                logging.getLogger("eval.slot").error("trial %s failed in the harness: %s\n%s", job.get("key"), e,
                                                     traceback.format_exc())
                result = {"key": job.get("key"), "outcome": "invalid", "injected": None,
                          "error": {"type": "harness_error", "message": f"{type(e).__name__}: {e}"}}
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.slot_worker")
    p.add_argument("--db", required=True)
    p.add_argument("--slot", type=int, required=True)
    p.add_argument("--cpu", type=int)
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    cpus = pin(args.cpu)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s slot{args.slot} %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per oracle request is noise here
    logging.getLogger("eval.slot").info("slot %d on cpus %s, pid %d", args.slot, cpus, os.getpid())
    try:
        asyncio.run(serve(args.db, args.slot))
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
