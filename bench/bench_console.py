"""Benchmark the console.

Reports:
- startup to first frame: a fresh interpreter that imports the console and runs it headless
  (process start -> first frame), on a store only and live on the embedded simulator, plus, live,
  the time until the grid shows the cluster's 5 stores;
- applying one snapshot: a monitor tick for a 200-node cluster where every node's figures changed
  (the grid diffs tiles by key) and one where a single node changed, and a store poll of 1,000
  tickets where one changed and one is new (the table is updated in place by key); each as the time
  to fold the message into the state and update the widgets, and the time until the frame is drawn;
- the eval browser, on a store holding a campaign of 500 trials (fixture campaigns written through
  the store's API): opening the campaign until its matrix is drawn (targets <= 300 ms), its full
  analysis (bootstrap intervals, comparisons, thresholds; drawn after the matrix, in a thread), and
  opening a trial with about 600 events until its timeline is drawn (target <= 300 ms).

    .venv/bin/python bench/bench_console.py [--repeat 20] [--eval-trials 500] [--only eval] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = r"""
import sys, time
started = float(sys.argv[1])
from pathlib import Path
from operator_tui.app import make_app
from operator_tui.config import Settings

live = sys.argv[3] == "live"
settings = Settings(db=Path(sys.argv[2]), lab_dir=Path(sys.argv[2]).parent / "labs")
app = make_app(settings, live=live, open_store=True, poll_interval=0.1)

async def pilot_run(pilot):
    first = time.time() - started
    grid = None
    if live:
        from widgets.node_grid import NodeTile
        deadline = time.time() + 20
        while time.time() < deadline:
            tiles = [t for t in app.screen.query(NodeTile) if t.view.key.startswith("store:")]
            if len(tiles) >= 5:
                grid = time.time() - started
                break
            await pilot.pause(0.02)
    print(f"RESULT {first:.4f} {grid if grid is not None else -1:.4f}", flush=True)
    await app.action_quit()

app.run(headless=True, size=(160, 48), auto_pilot=pilot_run)
"""


def startup(mode: str, repeat: int) -> dict[str, Any]:
    firsts, grids = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.time()
            out = subprocess.run([sys.executable, "-c", CHILD, str(started), str(Path(tmp) / "c.db"), mode],
                                 capture_output=True, text=True, timeout=60, cwd=ROOT,
                                 env={**os.environ, "XDG_DATA_HOME": tmp, "XDG_CONFIG_HOME": tmp})
            line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")), None)
            if line is None:
                raise SystemExit(f"startup run failed:\n{out.stdout}\n{out.stderr}")
            first, grid = map(float, line.split()[1:])
            firsts.append(first * 1000)
            if grid >= 0:
                grids.append(grid * 1000)
    result = {"first_frame_ms": summary(firsts)}
    if grids:
        result["grid_with_5_stores_ms"] = summary(grids)
    return result


def summary(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"median": round(statistics.median(values), 1),
            "p95": round(values[min(len(values) - 1, int(len(values) * 0.95))], 1),
            "max": round(values[-1], 1), "n": len(values)}


def observation(nodes: int, tick: int, changed: set[int] | None = None) -> Any:
    from subjects.base import Node, Observation, Workload

    at = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=tick)
    out = []
    for i in range(1, nodes + 1):
        moving = changed is None or i in changed
        qps = 1000.0 + (tick * 37 + i * 11) % 500 if moving else 1000.0
        state = "down" if moving and changed is not None else "up"
        out.append(Node(id=str(i), kind="store", name=f"store {i}", state=state, state_detail=state.title(),
                        metrics={"leader_count": 40.0, "region_count": 120.0, "capacity_bytes": 2.0**40,
                                 "available_bytes": 2.0**39, "available_ratio": 0.5, "qps": qps,
                                 "p99_ms": 5.0 + (tick % 3) if moving else 5.0}))
    return Observation(subject="tikv", at=at, nodes=out, workload=Workload(qps=nodes * 1000.0, error_rate=0.0,
                                                                            p99_ms=6.0))


def tickets(n: int, tick: int) -> list[Any]:
    from subjects.base import Ticket

    base = datetime(2025, 1, 1, tzinfo=UTC)
    out = []
    for i in range(n, 0, -1):
        status = "resolved" if i % 3 else "open"
        if i == n // 2 and tick:
            status = "escalated"
        out.append(Ticket(id=i, run_id=1, invariant="store_unreachable", entity=f"store:{i % 200}", severity="critical",
                          status=status, summary=f"store {i % 200} does not answer on its status port",
                          opened_at=base + timedelta(seconds=i), last_seen_at=base + timedelta(seconds=i + 5),
                          occurrences=5))
    return out


async def apply_benchmarks(repeat: int) -> dict[str, Any]:
    from operator_tui.app import make_app
    from operator_tui.config import Settings
    from operator_tui.policy import Policy
    from screens.messages import ClusterUpdate, StoreUpdate
    from widgets.keyed_table import KeyedTable
    from widgets.node_grid import NodeGrid

    app = make_app(Settings(db=Path("/nonexistent/bench.db")), live=False, open_store=False)
    results: dict[str, Any] = {}
    async with app.run_test(size=(160, 48)) as pilot:
        series = [(1735689600.0 + i, 1000.0, 0.0, 5.0) for i in range(300)]

        async def measure(message: Any, handler: Any) -> tuple[float, float]:
            t0 = time.perf_counter()
            c0 = time.process_time()
            handler(message)
            cpu.append((time.process_time() - c0) * 1000)
            t1 = time.perf_counter()
            await pilot.pause()  # until the frame with the change is drawn
            return (t1 - t0) * 1000, (time.perf_counter() - t0) * 1000

        cpu: list[float] = []

        t0 = time.perf_counter()
        app._cluster_update(ClusterUpdate(observation(200, 0), 1, [], [], [], series))
        await pilot.pause()
        results["grid_200_first_mount_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        grid = app.screen.query_one(NodeGrid)
        assert len(grid.tiles) == 200, len(grid.tiles)
        all_apply, all_frame, one_apply, one_frame = [], [], [], []
        for tick in range(1, repeat + 1):
            a, f = await measure(ClusterUpdate(observation(200, tick), tick + 1, [], [], [], series),
                                 app._cluster_update)
            assert grid.updates == 200
            all_apply.append(a)
            all_frame.append(f)
        app._cluster_update(ClusterUpdate(observation(200, 999, changed=set()), 999, [], [], [], series))
        await pilot.pause()
        for tick in range(repeat):
            a, f = await measure(ClusterUpdate(observation(200, 1000 + tick, changed={tick % 200 + 1}), 1000 + tick,
                                               [], [], [], series), app._cluster_update)
            assert grid.updates <= 2
            one_apply.append(a)
            one_frame.append(f)
        results["grid_200_all_changed"] = {"apply_ms": summary(all_apply), "apply_cpu_ms": summary(cpu[:repeat]),
                                           "to_frame_ms": summary(all_frame)}
        results["grid_200_one_changed"] = {"apply_ms": summary(one_apply), "apply_cpu_ms": summary(cpu[repeat:]),
                                           "to_frame_ms": summary(one_frame)}
        cpu.clear()

        await pilot.press("2")
        await pilot.pause()
        policy = Policy()
        t0 = time.perf_counter()
        app._store_update(StoreUpdate(policy, tickets(1000, 0), [], [], []))
        await pilot.pause()
        results["tickets_1000_first_fill_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        table = app.screen.query_one(KeyedTable)
        assert table.row_count == 1000
        apply, frame = [], []
        for tick in range(1, repeat + 1):
            rows = tickets(1000 + tick, tick)  # one new ticket on top, one changed status
            a, f = await measure(StoreUpdate(policy, rows, [], [], []), app._store_update)
            apply.append(a)
            frame.append(f)
        assert table.row_count == 1000 + repeat
        results["tickets_1000_one_new_one_changed"] = {"apply_ms": summary(apply), "apply_cpu_ms": summary(cpu),
                                                       "to_frame_ms": summary(frame)}

        switch = []
        for key in ("1", "2", "3", "4") * max(1, repeat // 4):
            t0 = time.perf_counter()
            await pilot.press(key)
            await pilot.pause()
            switch.append((time.perf_counter() - t0) * 1000)
        results["screen_switch_ms"] = summary(switch[4:] or switch)
    return results


async def eval_browser_benchmarks(repeat: int, trials: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-eval-browser-") as tmp:
        return await _eval_browser(Path(tmp), repeat, trials)


async def _eval_browser(folder: Path, repeat: int, trials: int) -> dict[str, Any]:
    from operator_tui.app import make_app
    from operator_tui.config import Settings
    from operator_tui.store import Store
    from screens.eval_campaign import CampaignScreen
    from screens.eval_trial import TrialScreen
    from tests.browser.fixture_campaigns import write_campaign
    from widgets.incident_timeline import IncidentTimeline

    db = folder / "eval.db"
    store = await Store.open(db)
    t0 = time.perf_counter()
    cid = await write_campaign(store, folder, "big", seeds=max(1, trials // 10), heavy_events=120)
    written_s = time.perf_counter() - t0
    n_trials = len(await store.list_trials(cid, limit=100_000))
    heavy = max(await store.list_trials(cid, limit=100_000),
                key=lambda t: (t.metrics_json.get("actions") or {}).get("executed") or 0)
    await store.close()

    app = make_app(Settings(db=db), live=False, open_store=True, poll_interval=60.0, mode="eval")
    results: dict[str, Any] = {"eval_campaign_trials": n_trials, "eval_fixture_write_s": round(written_s, 1)}
    async with app.run_test(size=(160, 48)) as pilot:
        async def until(predicate: Any, timeout: float = 120.0) -> None:
            deadline = time.monotonic() + timeout
            while not predicate():
                if time.monotonic() > deadline:
                    raise TimeoutError("the eval browser did not draw in time")
                await pilot.pause(0.001)

        await until(lambda: app.store is not None)
        matrix, analysis, detail, events = [], [], [], 0
        for _ in range(repeat):
            t0 = time.perf_counter()
            screen = CampaignScreen(cid)
            await app.push_screen(screen)
            await until(lambda s=screen: s.view is not None and s.query_one("#matrix-table").row_count == 5)
            # the rows are in the table: the next refresh draws them (a pause here would also wait
            # for the analysis, which runs in a thread as soon as the matrix is drawn)
            matrix.append((time.perf_counter() - t0) * 1000)
            await until(lambda s=screen: s.analysis is not None)
            analysis.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            trial = TrialScreen(heavy.id)
            await app.push_screen(trial)
            timeline = trial.query_one(IncidentTimeline)
            await until(lambda t=trial, w=timeline: t.view is not None and w.geometry is not None)
            await pilot.pause()
            detail.append((time.perf_counter() - t0) * 1000)
            events = len(timeline.events) + sum(len(v.points) for v in timeline.values)
            await app.pop_screen()
            await app.pop_screen()
            await pilot.pause()
        results["eval_matrix_open_ms"] = summary(matrix)
        results["eval_analysis_ready_ms"] = summary(analysis)
        results["eval_trial_detail_ms"] = summary(detail)
        results["eval_trial_detail_events"] = events
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--startup-repeat", type=int, default=5)
    parser.add_argument("--eval-trials", type=int, default=500, help="trials of the eval browser's campaign")
    parser.add_argument("--only", choices=["eval"], help="run only this part")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if args.only is None:
        results["startup_store_only"] = startup("store", args.startup_repeat)
        results["startup_live_embedded_sim"] = startup("live", args.startup_repeat)
        results.update(asyncio.run(apply_benchmarks(args.repeat)))
    results.update(asyncio.run(eval_browser_benchmarks(max(3, args.repeat // 4), args.eval_trials)))
    results["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for key, value in results.items():
        print(f"{key:36} {json.dumps(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
