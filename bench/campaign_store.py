"""Reliability campaign: the store under contention and damage.

Two processes on one store at once, racing for the same work: claiming tickets (one running
session per entity, ever), deciding the same actions (approve against cancel: exactly one wins),
appending audit events (the chain stays whole, none lost). Then a corrupt file, a truncated one
and one with a newer schema: each refused with one line, and left byte for byte as it was.

    .venv/bin/python bench/campaign_store.py [--rounds 300] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import table
from operator_tui.actions.states import ActionState
from operator_tui.errors import UserError
from operator_tui.store import Store, StoreError, TickWrite
from operator_tui.store.schema import SCHEMA_VERSION
from subjects.base import Severity, Violation

WORKER = """
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[4])
from operator_tui.actions import decisions
from operator_tui.errors import UserError
from operator_tui.store import Store

async def main(db, name, rounds):
    store = await Store.open(db)
    out = {"claims": 0, "decisions": 0, "refused": 0, "audit": 0, "errors": []}
    try:
        run_id = await store.start_run("bench", "toy")
        t0 = time.monotonic()
        for i in range(1, rounds + 1):
            try:
                if await store.claim_ticket(i, run_id, f"toy|node:{i % 7}", name, 1):
                    out["claims"] += 1
                verb = decisions.approve if name == "a" else decisions.cancel
                try:
                    await verb(store, i, f"human:{name}")
                    out["decisions"] += 1
                except UserError:
                    out["refused"] += 1
                await store.audit(f"human:{name}", "bench.mark", f"round:{i}", {"i": i}, run_id)
                out["audit"] += 1
            except Exception as e:
                out["errors"].append(f"{type(e).__name__}: {e}")
        out["seconds"] = time.monotonic() - t0
    finally:
        await store.close()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def prepare(db: Path, rounds: int) -> None:
    """`rounds` open tickets on 7 entities and `rounds` actions awaiting approval, of a live run."""
    store = await Store.open(db)
    try:
        run_id = await store.start_run("bench", "toy")
        opened = [Violation(invariant=f"check{i}", entity=f"node:{i % 7}", severity=Severity.warning,
                            summary=f"ticket {i}") for i in range(1, rounds + 1)]
        await store.apply_tick(TickWrite(run_id=run_id, open=opened))
        for _ in range(rounds):
            a = await store.create_action(name="wait", params={"seconds": 1}, target="", risk="low", idempotent=True,
                                          requested_by="agent", run_id=run_id)
            await store.transition_action(a.id, ActionState.validated, "system", "bench")
            await store.transition_action(a.id, ActionState.awaiting_approval, "system", "bench")
    finally:
        await store.close()


async def contention(folder: Path, rounds: int) -> dict[str, Any]:
    db = folder / "contention.db"
    await prepare(db, rounds)
    # The approvals need the requesting run alive: keep it so, in this process, for the race.
    holder = await Store.open(db)
    await holder.start_run("bench", "toy")
    await holder.db.write("UPDATE actions SET run_id = (SELECT max(id) FROM runs)")
    script = folder / "worker.py"
    script.write_text(WORKER)
    root = str(Path(__file__).resolve().parent.parent)
    t0 = time.monotonic()
    procs = [subprocess.Popen([sys.executable, str(script), str(db), name, str(rounds), root], stdout=subprocess.PIPE,
                              text=True) for name in ("a", "b")]
    outs = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
    elapsed = time.monotonic() - t0
    try:
        sessions = await holder.db.fetchall("SELECT ticket_id, count(*) n FROM agent_sessions GROUP BY ticket_id")
        double_claims = sum(1 for r in sessions if r["n"] > 1)
        running = await holder.db.fetchall(
            "SELECT claim_key, count(*) n FROM agent_sessions WHERE status = 'running' GROUP BY claim_key")
        two_per_entity = sum(1 for r in running if r["n"] > 1)
        decided = await holder.db.fetchall(
            "SELECT action_id, count(*) n FROM action_transitions WHERE from_state = 'awaiting_approval'"
            " GROUP BY action_id")
        double_decisions = sum(1 for r in decided if r["n"] > 1)
        ok, checked, problem = await holder.verify_audit()
        marks = await holder.db.scalar("SELECT count(*) FROM audit_events WHERE kind = 'bench.mark'")
    finally:
        await holder.close()
    return {
        "rounds_per_process": rounds, "elapsed_s": round(elapsed, 1),
        "write_ops_per_s": round(sum(o["claims"] + o["decisions"] + o["refused"] + o["audit"] for o in outs) / elapsed),
        "claims_won": sum(o["claims"] for o in outs), "tickets_claimed_twice": double_claims,
        "entities_with_two_running_sessions": two_per_entity,
        "decisions_won": sum(o["decisions"] for o in outs), "decisions_refused": sum(o["refused"] for o in outs),
        "actions_decided_twice": double_decisions,
        "audit_marks_written": sum(o["audit"] for o in outs), "audit_marks_found": marks,
        "audit_intact": ok, "audit_events": checked, "audit_problem": problem or None,
        "errors": [e for o in outs for e in o["errors"]][:5],
    }


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def damaged(folder: Path) -> list[dict[str, Any]]:
    cases = []
    garbage = folder / "garbage.db"
    garbage.write_bytes(os.urandom(64 * 1024))
    truncated = folder / "truncated.db"
    real = folder / "real.db"
    store = await Store.open(real)
    run_id = await store.start_run("bench", "toy")
    await store.apply_tick(TickWrite(run_id=run_id, open=[Violation(
        invariant=f"c{i}", entity=f"n:{i}", severity=Severity.info, summary="x" * 500) for i in range(300)]))
    await store.end_run(run_id)
    await store.close()
    data = real.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    newer = folder / "newer.db"
    newer.write_bytes(data)
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    for name, path in (("random bytes", garbage), ("truncated to half", truncated), ("newer schema", newer)):
        before = digest(path)
        siblings = sorted(p.name for p in folder.iterdir())
        try:
            opened = await Store.open(path)
            await opened.close()
            verdict, message = "OPENED", ""
        except (StoreError, UserError) as e:
            verdict, message = "refused", str(e)
        cases.append({"file": name, "verdict": verdict, "one_line": "\n" not in message,
                      "untouched": digest(path) == before and sorted(p.name for p in folder.iterdir()) == siblings,
                      "message": message[:110]})
    return cases


async def run(rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="operator-store-campaign-") as tmp:
        return {"contention": await contention(Path(tmp), rounds), "damaged": await damaged(Path(tmp))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args.rounds))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    c = result["contention"]
    print(table(["two processes, one store", "value"], [[k, v] for k, v in c.items()]))
    print()
    print(table(["damaged store", "verdict", "one line", "untouched", "message"],
                [[d["file"], d["verdict"], d["one_line"], d["untouched"], d["message"]] for d in result["damaged"]]))
    good = (c["tickets_claimed_twice"] == 0 and c["entities_with_two_running_sessions"] == 0
            and c["actions_decided_twice"] == 0 and c["audit_intact"] and not c["errors"]
            and c["audit_marks_found"] == c["audit_marks_written"]
            and all(d["verdict"] == "refused" and d["untouched"] and d["one_line"] for d in result["damaged"]))
    print(f"\n{'PASS' if good else 'FAIL'}")
    return 0 if good else 1


if __name__ == "__main__":
    raise SystemExit(main())
