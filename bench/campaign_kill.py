"""Reliability campaign: `kill -9` of the operator at seeded random points, restarted each time.

One simulated TiKV cluster (behind a recording PD proxy: the ground truth of every request the
operator sent), one store, one lineage of `operator-tui run --headless` processes. Each round
picks, with the seed, a phase and a moment, SIGKILLs the operator there and starts it again:

    monitoring      ticks running, no fault
    diagnosis       a fault injected; killed while an agent session works on its ticket
    execution       a fault whose remedy takes a while (split a hot region, drain a slow store);
                    killed while the agent's action executes
    cli-execution   a person's `operator-tui actions run transfer_peer|add_peer` (its own process
                    and run), killed mid-flight; the headless operator takes it over

and then checks what the issue asks: no lost ticket (every ticket of a dead run is carried on or
closed; none stuck `investigating`), no non-idempotent change applied twice (from the proxy's
record: at most one successful PD operator per action), no action left `executing`, and the
audit chain intact.

    .venv/bin/python bench/campaign_kill.py [--kills 100] [--seed 1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.common import table
from operator_tui.store import Store
from subjects.tikv.sim import SimConfig, start_sim_thread
from tests.pd_proxy import PDProxy

OPERATOR = str(Path(sys.executable).with_name("operator-tui"))
ENV = {
    "OPERATOR_TUI_TIKV__GRACES": json.dumps({"slow_store": 1, "hot_store": 1, "leftover_evict_scheduler": 1,
                                             "store_unreachable": 0, "leader_imbalance": 3, "high_latency": 30}),
    "OPERATOR_TUI_AGENT_OPTIONS__VERIFY_DELAY_S": "1",
    "OPERATOR_TUI_CLEAR_AFTER": "2",
}
PHASES = ("monitoring", "diagnosis", "execution", "cli-execution")
WEIGHTS = (0.2, 0.3, 0.35, 0.15)
NON_IDEMPOTENT = {"split_region": "split-region", "transfer_peer": "transfer-peer", "add_peer": "add-peer",
                  "remove_peer": "remove-peer"}


class Campaign:
    def __init__(self, kills: int, seed: int, folder: Path, log: Any):
        self.kills, self.rng, self.folder, self.out = kills, random.Random(seed), folder, log
        self.db = folder / "operator.db"
        self.proc: asyncio.subprocess.Process | None = None
        self.rounds: list[dict[str, Any]] = []
        self.faults: list[str] = []

    # -- processes ------------------------------------------------------------------------------

    async def start_operator(self) -> None:
        log = (self.folder / "operator.log").open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            OPERATOR, "run", "--headless", "--pd", self.proxy.url, "--db", str(self.db), "--agent", "embedded",
            "--mode", "execute", "--approval", "off", "--interval", "0.5", stdout=log, stderr=log,
            env={**os.environ, **ENV})
        log.close()
        await self.until(lambda: self.current_run(), 60, "the operator's run")

    async def kill(self, proc: asyncio.subprocess.Process) -> None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()

    async def current_run(self) -> Any:
        if self.proc is None:
            return None
        for run in await self.store.list_runs(limit=20):
            if run.pid == self.proc.pid and run.kind == "headless":
                return run
        return None

    async def until(self, probe: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await probe()
            if value:
                return value
            await asyncio.sleep(0.1)
        return None

    # -- faults ---------------------------------------------------------------------------------

    async def inject(self, kind: str) -> None:
        sim = self.sim.pd_url
        async with httpx.AsyncClient(timeout=10) as http:
            if kind == "evict":
                store = self.rng.randint(1, 5)
                await http.post(f"{sim}/pd/api/v1/schedulers", json={"name": "evict-leader-scheduler",
                                                                     "store_id": store})
                return
            body: dict[str, Any] = {"kind": kind}
            if kind == "hot_region":
                regions = (await http.get(f"{sim}/pd/api/v1/regions")).json()["regions"]
                body |= {"region_id": self.rng.choice(regions)["id"], "qps": 60000}
            elif kind == "slow_store":
                body |= {"store_id": self.rng.randint(1, 5), "latency_ms": 300}
            elif kind == "kill_store":
                body |= {"store_id": self.rng.randint(1, 5)}
            r = await http.post(f"{sim}/sim/v1/faults", json=body)
            if r.status_code == 200:
                self.faults.append(r.json()["id"])

    async def revert_all(self) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            for fid in self.faults:
                await http.delete(f"{self.sim.pd_url}/sim/v1/faults/{fid}")
        self.faults.clear()

    # -- one round ------------------------------------------------------------------------------

    async def round(self, number: int) -> dict[str, Any]:
        phase = self.rng.choices(PHASES, WEIGHTS)[0]
        run = await self.current_run()
        info: dict[str, Any] = {"round": number, "phase": phase, "run": run.id if run else None}
        victim = self.proc
        if phase == "monitoring":
            await asyncio.sleep(self.rng.uniform(0.3, 3.0))
        elif phase == "diagnosis":
            await self.inject(self.rng.choice(["evict", "kill_store", "slow_store", "hot_region"]))

            async def session() -> Any:
                return [s for s in await self.store.list_sessions(run_id=run.id, limit=20) if s.status == "running"]

            info["hit"] = "session" if await self.until(session, 30, "a session") else "none"
            await asyncio.sleep(self.rng.uniform(0, 0.6))
        elif phase == "execution":
            await self.inject(self.rng.choice(["hot_region", "slow_store"]))

            async def executing() -> Any:
                return [a for a in await self.store.list_actions(states=["executing"], run_id=run.id)]

            hit = await self.until(executing, 40, "an executing action")
            info["hit"] = ",".join(a.name for a in hit) if hit else "none"
            await asyncio.sleep(self.rng.uniform(0, 1.5))
        else:
            victim = await self.cli_action()
            info["hit"] = "cli"
        info["executing_at_kill"] = [a.name for a in await self.store.list_actions(states=["executing"])]
        t0 = time.monotonic()
        await self.kill(victim)
        if victim is self.proc:
            await self.start_operator()
        dead = {r.id for r in await self.store.list_runs(limit=50) if r.ended_at is None and r.pid == victim.pid}

        async def recovered() -> bool:
            runs = {r.id: r for r in await self.store.list_runs(limit=50)}
            if any(runs[r].ended_at is None for r in dead if r in runs):
                return False
            stuck = [a for a in await self.store.list_actions(states=["executing"])
                     if a.run_id in runs and runs[a.run_id].ended_at is not None]
            sessions = [s for s in await self.store.list_sessions(limit=50)
                        if s.status == "running" and runs.get(s.run_id) and runs[s.run_id].ended_at is not None]
            return not stuck and not sessions

        ok = await self.until(recovered, 60, "recovery")
        info["recovered_s"] = round(time.monotonic() - t0, 2) if ok else None
        await self.revert_all()
        await asyncio.sleep(self.rng.uniform(1.0, 3.0))
        return info

    async def cli_action(self) -> asyncio.subprocess.Process:
        """A person's transfer_peer (or add_peer) through the CLI, killed once it executes."""
        async with httpx.AsyncClient(timeout=10) as http:
            regions = (await http.get(f"{self.sim.pd_url}/pd/api/v1/regions")).json()["regions"]
        region = self.rng.choice(regions)
        peers = {p["store_id"] for p in region["peers"]}
        spare = [s for s in range(1, 6) if s not in peers]
        source = next((p for p in sorted(peers) if p != region["leader"].get("store_id")), None)
        if self.rng.random() < 0.5 and spare and source:
            params = ["transfer_peer", "--param", f"region_id={region['id']}", "--param", f"from_store_id={source}",
                      "--param", f"to_store_id={self.rng.choice(spare)}"]
        else:
            params = ["add_peer", "--param", f"region_id={region['id']}", "--param",
                      f"store_id={self.rng.choice(spare or [1])}"]
        log = (self.folder / "cli.log").open("ab")
        proc = await asyncio.create_subprocess_exec(OPERATOR, "actions", "run", *params, "--pd", self.proxy.url,
                                                    "--db", str(self.db), stdout=log, stderr=log,
                                                    env={**os.environ, **ENV})
        log.close()

        async def executing() -> Any:
            return [a for a in await self.store.list_actions(states=["executing"], limit=20)
                    if a.requested_by.startswith("human:")] or proc.returncode is not None

        await self.until(executing, 30, "the CLI's action executing")
        await asyncio.sleep(self.rng.uniform(0, 2.0))
        return proc

    # -- the whole campaign -----------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        self.sim = await asyncio.to_thread(start_sim_thread, SimConfig(port=0, stores=5, regions=300,
                                                                       time_scale=5.0, seed=7))
        try:
            async with PDProxy(self.sim.pd_url) as proxy:
                self.proxy = proxy
                async with httpx.AsyncClient(timeout=10) as http:
                    # Slow leader moves (long drains) and the operator, not PD, handling slow stores; keep
                    # added peers (so add_peer has a lasting effect to reconcile).
                    await http.post(f"{self.sim.pd_url}/pd/api/v1/config", json={
                        "leader-schedule-limit": 2, "enable-remove-extra-replica": "false"})
                    await http.delete(f"{self.sim.pd_url}/pd/api/v1/schedulers/evict-slow-store-scheduler")
                self.store = await Store.open(self.db)
                started = time.monotonic()
                try:
                    await self.start_operator()
                    for number in range(1, self.kills + 1):
                        info = await self.round(number)
                        self.rounds.append(info)
                        print(f"[{number}/{self.kills}] {info['phase']:<13} hit={info.get('hit', '-'):<28} "
                              f"recovered in {info['recovered_s']} s", file=self.out, flush=True)
                    await asyncio.sleep(8)  # the last operator carries on, adopts, reconciles
                    self.proc.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.wait_for(self.proc.wait(), 30)
                    except TimeoutError:
                        await self.kill(self.proc)
                    return await self.verdict(time.monotonic() - started)
                finally:
                    if self.proc is not None and self.proc.returncode is None:
                        await self.kill(self.proc)
                    await self.store.close()
        finally:
            await asyncio.to_thread(self.sim.stop)

    async def verdict(self, elapsed: float) -> dict[str, Any]:
        store = self.store
        runs = {r.id: r for r in await store.list_runs(limit=10_000)}
        tickets = await store.list_tickets(limit=100_000)
        actions = await store.list_actions(limit=100_000)
        lost = [t.id for t in tickets if t.status in ("open", "investigating", "escalated")
                and runs[t.run_id].status == "died"]
        stuck = []
        for t in tickets:
            if t.status == "investigating":
                sessions = await store.sessions_for_ticket(t.id)
                if not any(s.status == "running" and runs[s.run_id].ended_at is None for s in sessions):
                    stuck.append(t.id)
        duplicates, executed = [], 0
        for a in actions:
            op = NON_IDEMPOTENT.get(a.name)
            transitions = await store.action_transitions(a.id)
            starts = [t.at.timestamp() for t in transitions if t.to_state == "executing"]
            if op is None or not starts:
                continue
            executed += 1
            end = transitions[-1].at.timestamp() if a.state not in ("executing", "unknown") else time.time()
            body = {"name": op, **{k: v for k, v in a.params.items() if k != "policy"}}
            # PD operators this action's request created: same body, while it was executing (the proxy and
            # the store read one clock). Another action on the same region later is another decision.
            applied = [r for r in self.proxy.requests if r.method == "POST" and r.path == "/pd/api/v1/operators"
                       and isinstance(r.body, dict) and all(r.body.get(k) == v for k, v in body.items())
                       and starts[0] <= r.at <= end and r.status == 200]
            if len(applied) > 1:
                duplicates.append(a.id)
        ok, checked, problem = await store.verify_audit()
        recovered = [r["recovered_s"] for r in self.rounds if r["recovered_s"] is not None]
        phases = {p: sum(1 for r in self.rounds if r["phase"] == p) for p in PHASES}
        return {
            "kills": len(self.rounds), "phases": phases,
            "kills_with_an_action_executing": sum(1 for r in self.rounds if r["executing_at_kill"]),
            "kills_during_a_session": sum(1 for r in self.rounds if r.get("hit") == "session"),
            "runs": len(runs), "runs_died": sum(1 for r in runs.values() if r.status == "died"),
            "tickets": len(tickets), "tickets_resolved": sum(1 for t in tickets if t.status == "resolved"),
            "tickets_escalated": sum(1 for t in tickets if t.status == "escalated"),
            "lost_tickets": len(lost) + len(stuck),
            "actions": len(actions),
            "actions_reconciled": sum(1 for a in actions if "reconciled" in a.reason),
            "non_idempotent_executed": executed, "duplicate_executions": len(duplicates),
            "left_executing": sum(1 for a in actions if a.state == "executing"),
            "left_unknown": sum(1 for a in actions if a.state == "unknown"),
            "audit_events": checked, "audit_intact": ok, "audit_problem": problem or None,
            "recovery_s": {"median": round(statistics.median(recovered), 2) if recovered else None,
                           "max": max(recovered) if recovered else None,
                           "not_recovered_in_60_s": len(self.rounds) - len(recovered)},
            "elapsed_s": round(elapsed), "pd_requests": len(self.proxy.requests),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", metavar="DIR", help="keep the store and logs in DIR (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="operator-kill-campaign-"))
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_DATA_HOME", str(folder / "data"))
    result = asyncio.run(Campaign(args.kills, args.seed, folder, sys.stderr).run())
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        rows = [[k, json.dumps(v) if isinstance(v, dict) else v] for k, v in result.items()]
        print(table(["figure", "value"], rows))
        good = (result["lost_tickets"] == 0 and result["duplicate_executions"] == 0 and result["left_executing"] == 0
                and result["audit_intact"])
        print(f"\n{'PASS' if good else 'FAIL'}: lost tickets {result['lost_tickets']}, duplicate executions "
              f"{result['duplicate_executions']}, left executing {result['left_executing']}, audit "
              f"{'intact' if result['audit_intact'] else 'BROKEN'}")
    if not args.keep:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
