"""Kill switch latency: from engaging it to the in-flight action being stopped (target 100 ms).

Two ways in: the same process (the console's key) and another process (`operator-tui killswitch
on`, which only writes the store; the engine running the action notices by polling). Latency is
read from the store's own timestamps: the setting's write and the action's first transition out of
`executing` (`unknown`: its request was sent, so it is then reconciled, here to `cancelled` since
the operator it started is stopped in PD too).

    .venv/bin/python bench/bench_engine.py [--rounds 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.common import sim_process, summary, table
from operator_tui.actions import decisions
from operator_tui.actions.engine import ActionEngine
from operator_tui.actions.states import ActionState
from operator_tui.store import Store
from subjects import registry
from subjects.base import ActionRequest


async def one_round(engine: ActionEngine, store: Store, pd_url: str, db: Path, cross_process: bool) -> float:
    httpx.post(f"{pd_url}/pd/api/v1/config", json={"enable-remove-extra-replica": "false"})
    regions = httpx.get(f"{pd_url}/pd/api/v1/regions").json()["regions"]
    busy = {o.get("region_id") for o in httpx.get(f"{pd_url}/pd/api/v1/operators", params={"object": ""}).json() or []
            if isinstance(o, dict)}
    region = next(r for r in regions if 1 not in {p["store_id"] for p in r["peers"]} and r["id"] not in busy
                  and r["leader"].get("store_id"))
    [action] = await engine.submit([ActionRequest(name="add_peer", params={"region_id": region["id"],
                                                                          "store_id": 1})], actor="agent")
    await engine.wait_for([action.id], timeout=30, until=frozenset({ActionState.executing}))
    await asyncio.sleep(0.3)
    if cross_process:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "operator_tui", "killswitch", "on", "--db",
                                                    str(db), stdout=subprocess.DEVNULL)
        await proc.wait()
    else:
        await decisions.engage_killswitch(store, "human:bench")
    [final] = await engine.wait_for([action.id], timeout=10)
    assert final.state == "cancelled", final
    engaged = (await store.db.fetchone("SELECT updated_at FROM settings WHERE key = 'killswitch'"))[0]
    stopped = next(t.at for t in await store.action_transitions(action.id) if t.from_state == "executing")
    from operator_tui.timeutil import from_text

    latency = (stopped - from_text(engaged)).total_seconds() * 1000
    await decisions.release_killswitch(store, "human:bench")
    await asyncio.sleep(0.2)
    return latency


async def run(rounds: int) -> dict[str, dict[str, float]]:
    with sim_process(stores=5, regions=400, time_scale=1.0) as pd_url, tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        store = await Store.open(db)
        subject = await registry.build_subject("tikv", {"pd_url": pd_url})
        engine = ActionEngine(store, subject, await store.start_run("bench", "tikv"), poll_interval=0.05)
        await engine.start()
        try:
            results = {}
            for name, cross in (("same process", False), ("another process", True)):
                results[name] = summary([await one_round(engine, store, pd_url, db, cross) for _ in range(rounds)])
            return results
        finally:
            await engine.stop()
            await subject.aclose()
            await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("XDG_DATA_HOME", tmp)
        results = asyncio.run(run(args.rounds))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(table(["kill switch engaged from", "median ms", "p95 ms", "min ms"],
                [[k, v["median"], v["p95"], v["min"]] for k, v in results.items()]))
    worst = max(v["p95"] for v in results.values())
    print(f"\np95 {worst} ms: {'meets' if worst <= 100 else 'misses'} the 100 ms target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
