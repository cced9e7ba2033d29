"""etcd under the operator: how fast a leader kill and a NOSPACE alarm are noticed, fixed and verified.

A real 3-member lab (Debian etcd, lab timings: heartbeat 50 ms, election 500 ms, pre-vote) under its
load generator, watched by the whole loop (monitor, embedded agent, engine) with the headless
defaults (one observation a second, verification 5 s after the actions). Per trial:

- leader kill: SIGKILL the leader. Election = until a majority agrees on another leader (polled
  every 0.1 s by a second observer); ticket = until `member_reachable` opens; resolved = until the
  agent's restart is verified.
- NOSPACE: fill the quota. Ticket = until `no_alarms` opens; resolved = until compaction, the
  defragmentations, the leader move and the disarm are verified.

Times run from the fault's injection (its record). Also: one observation of 3 members.

    .venv/bin/python bench/bench_etcd.py [--trials 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "etcd"))

from etcd_support import (
    healthy,
    inject,
    leader,
    make_lab,
    revert,
    seconds_since,
    subject_for,
    teardown_lab,
    until,
)

from bench.common import summary, table
from operator_tui.config import AgentSettings
from operator_tui.store import Store
from tests.operator_harness import run_operator


async def leader_kill(lab, store) -> dict[str, float]:
    subject, watcher = await subject_for(lab), await subject_for(lab)
    try:
        await healthy(subject)
        async with run_operator(subject, store, interval=1.0, agent_settings=AgentSettings(verify_delay_s=5.0)) as op:
            await asyncio.sleep(2.0)
            old = leader(await watcher.observe())
            record = await inject(lab, "kill_member", "leader")
            try:
                await until(watcher, lambda o: o.details.get("leader") not in (None, old), 10.0, "a new leader", 0.1)
                elected = datetime.now(UTC)
                opened = await op.ticket("member_reachable", timeout=30)
                resolved = await op.ticket("member_reachable", "resolved", timeout=60)
            finally:
                await revert(lab, record)
        assert resolved.resolution["by"] == "agent", resolved.resolution
        return {"election_s": seconds_since(record, elected), "ticket_s": seconds_since(record, opened.opened_at),
                "resolved_s": seconds_since(record, resolved.resolved_at)}
    finally:
        await subject.aclose()
        await watcher.aclose()


async def nospace(lab, store) -> dict[str, float]:
    subject = await subject_for(lab)
    try:
        await healthy(subject)
        async with run_operator(subject, store, interval=1.0, agent_settings=AgentSettings(verify_delay_s=5.0)) as op:
            await asyncio.sleep(2.0)
            record = await inject(lab, "quota_fill")
            try:
                opened = await op.ticket("no_alarms", timeout=30)
                resolved = await op.ticket("no_alarms", "resolved", timeout=90)
            finally:
                await revert(lab, record)
            steps = list(reversed(await store.list_actions(ticket_id=resolved.id)))
        assert resolved.resolution["by"] == "agent" and all(a.state == "succeeded" for a in steps)
        return {"ticket_s": seconds_since(record, opened.opened_at), "resolved_s": seconds_since(record, resolved.resolved_at),
                "actions": float(len(steps))}
    finally:
        await subject.aclose()


async def run(trials: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        lab = make_lab(Path(tmp) / "lab", load=True)
        try:
            subject = await subject_for(lab)
            await healthy(subject)
            ticks = []
            for _ in range(20):
                ticks.append((await subject.observe()).duration_ms)
            await subject.aclose()
            kills, fills = [], []
            for i in range(trials):
                store = await Store.open(Path(tmp) / f"bench-{i}.db")
                try:
                    kills.append(await leader_kill(lab, store))
                    fills.append(await nospace(lab, store))
                finally:
                    await store.close()
                print(f"trial {i + 1}/{trials}: leader kill {kills[-1]}, NOSPACE {fills[-1]}", file=sys.stderr)
        finally:
            teardown_lab(lab)
    return {
        "observe_ms": summary(ticks),
        "leader_kill": {k: summary([t[k] for t in kills]) for k in kills[0]},
        "nospace": {k: summary([t[k] for t in fills]) for k in fills[0]},
        "trials": trials,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=3, help="fault trials of each kind (default: 3)")
    p.add_argument("--json", action="store_true", help="figures as JSON")
    args = p.parse_args()
    if not 1 <= args.trials <= 50:
        p.error("--trials must be between 1 and 50")
    result = asyncio.run(run(args.trials))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    rows = [["observe (3 members)", "ms", *result["observe_ms"].values()]]
    for scenario in ("leader_kill", "nospace"):
        for name, s in result[scenario].items():
            rows.append([f"{scenario} {name}", "s" if name.endswith("_s") else "", *s.values()])
    print(table(["figure", "unit", "median", "p95", "min"], rows))


if __name__ == "__main__":
    main()
