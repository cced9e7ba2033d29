"""Benchmark the demo and the incident timeline.

Reports:
- each demo played with --autoplay, headless, in a fresh process on a fresh store and lab: the
  whole run (process start to exit), and from the store, the incident's figures: fault to ticket
  opened, to diagnosis recorded, to action executed, to ticket resolved;
- the incident timeline: `store.incident()` for a ticket with N actions (6 transitions each), and
  drawing the timeline of that many events at 100 and 160 columns.

    .venv/bin/python bench/bench_demo.py [--subjects tikv,ratelimiter] [--speed 1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import summary, table  # noqa: E402

CHILD = r"""
import sys
from pathlib import Path
from operator_tui.app import make_app, run_app
from operator_tui.config import load_settings
from operator_tui.demo.director import DemoOptions
from scenarios.demo import builtin, load_script

db, subject, speed = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
settings = load_settings(None, db=str(db), lab_dir=str(db.parent / "labs" / "demo"), subject=subject)
app = make_app(settings, demo=DemoOptions(load_script(builtin(subject)), autoplay=True, speed=speed))
app.run(headless=True, size=(160, 48))
sys.exit(app.return_code or 0)
"""


def _at(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def demo_run(subject: str, speed: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        db = Path(tmp) / "demo.db"
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", CHILD, str(db), subject, str(speed)], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        wall = time.monotonic() - started
        with closing(sqlite3.connect(db)) as conn:
            fault = conn.execute("SELECT injected_at FROM faults ORDER BY id LIMIT 1").fetchone()
            ticket = conn.execute("SELECT id, opened_at, resolved_at, status FROM tickets ORDER BY id LIMIT 1"
                                  ).fetchone()
            diagnosed = executed = None
            if ticket:
                row = conn.execute("SELECT at FROM ticket_events WHERE ticket_id = ? AND kind = 'diagnosed' "
                                   "ORDER BY id LIMIT 1", (ticket[0],)).fetchone()
                diagnosed = row[0] if row else None
                row = conn.execute("SELECT t.at FROM action_transitions t JOIN actions a ON a.id = t.action_id "
                                   "WHERE a.ticket_id = ? AND t.to_state = 'succeeded' ORDER BY t.id LIMIT 1",
                                   (ticket[0],)).fetchone()
                executed = row[0] if row else None
    t0 = _at(fault[0]) if fault else None

    def since(text: str | None) -> float | None:
        at = _at(text)
        return round((at - t0).total_seconds(), 2) if at and t0 else None

    return {"subject": subject, "speed": speed, "exit": proc.returncode, "wall_s": round(wall, 1),
            "ticket_status": ticket[3] if ticket else None, "detect_s": since(ticket[1] if ticket else None),
            "diagnose_s": since(diagnosed), "act_s": since(executed),
            "resolve_s": since(ticket[2] if ticket else None),
            "stderr": proc.stderr.strip().splitlines()[-1:] if proc.returncode else []}


async def timeline_figures(sizes: list[int], repeat: int) -> list[dict[str, Any]]:
    from operator_tui.actions.states import ActionState
    from operator_tui.store import Store, TickWrite
    from screens.incident import timeline_data
    from subjects.base import Severity, Violation
    from widgets.incident_timeline import render_timeline

    out = []
    steps = (ActionState.validated, ActionState.approved, ActionState.executing, ActionState.succeeded)
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-timeline-") as tmp:
            store = await Store.open(Path(tmp) / "t.db")
            try:
                run_id = await store.start_run("bench", "tikv")
                v = Violation(invariant="store_unreachable", entity="store:2", severity=Severity.critical,
                              summary="store 2 does not answer")
                ticket_id = (await store.apply_tick(TickWrite(run_id=run_id, open=[v]))).opened[0].id
                for i in range(n):
                    a = await store.create_action(name="transfer_leader", params={"region_id": i, "to_store_id": 3},
                                                  target=f"region:{i}", risk="low", idempotent=True,
                                                  requested_by="agent", run_id=run_id, ticket_id=ticket_id)
                    for state in steps:
                        await store.transition_action(a.id, state, "system", f"step {state.value}")
                query = []
                for _ in range(repeat):
                    t = time.perf_counter()
                    incident = await store.incident(ticket_id)
                    query.append((time.perf_counter() - t) * 1000)
            finally:
                await store.close()
        events, windows, lanes = timeline_data(incident)
        draws = {}
        for width in (100, 160):
            samples = []
            for _ in range(repeat):
                t = time.perf_counter()
                render_timeline(events, windows, lanes, width)
                samples.append((time.perf_counter() - t) * 1000)
            draws[width] = summary(samples)["median"]
        out.append({"actions": n, "events": len(incident.events), "incident_ms": summary(query)["median"],
                    "draw_100_ms": draws[100], "draw_160_ms": draws[160]})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subjects", default="tikv,ratelimiter", help="demos to play (comma-separated)")
    p.add_argument("--speed", type=float, default=1.0, help="the demo's --speed (default: 1, as presented)")
    p.add_argument("--sizes", default="1,10,100,500", help="actions per incident for the timeline figures")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    demos = []
    for subject in [s for s in args.subjects.split(",") if s]:
        print(f"playing the {subject} demo…", file=sys.stderr)
        demos.append(demo_run(subject, args.speed))
    timeline = asyncio.run(timeline_figures([int(s) for s in args.sizes.split(",")], args.repeat))
    if args.json:
        print(json.dumps({"demos": demos, "timeline": timeline}, indent=2))
        return 0
    if demos:
        print("demo --autoplay (headless, fresh store and lab); seconds after the fault was injected:")
        print(table(["subject", "speed", "exit", "whole run s", "ticket", "detected", "diagnosed", "acted", "resolved"],
                    [[d["subject"], d["speed"], d["exit"], d["wall_s"], d["ticket_status"], d["detect_s"],
                      d["diagnose_s"], d["act_s"], d["resolve_s"]] for d in demos]))
        for d in demos:
            if d["stderr"]:
                print(f"  {d['subject']}: {d['stderr'][0]}")
        print()
    print("incident timeline (median ms):")
    print(table(["actions", "events", "store.incident()", "draw at 100 cols", "draw at 160 cols"],
                [[t["actions"], t["events"], t["incident_ms"], t["draw_100_ms"], t["draw_160_ms"]] for t in timeline]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
