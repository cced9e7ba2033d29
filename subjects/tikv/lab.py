"""The local TiKV lab: the simulator as a background process, and the node-level actions a host
agent offers (what a supervisor on each machine lets an operator do: restart or stop a store).

A real cluster gets these from whatever manages its machines (systemd, TiUP, Kubernetes); the
simulator serves a host agent of its own (`/host/v1`, on its own listener), and the subject
offers these actions only when it is told the host agent's URL (`[tikv] host_agent`). The
simulator's fault API is on yet another listener that the operator is never told about.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from subjects.base import (
    ActionContext,
    ActionDef,
    ActionFailed,
    ActionOutcome,
    Observation,
    Reconciliation,
    RiskTier,
)
from subjects.plugin import LabReport, PluginError
from subjects.tikv.actions import StoreParams, store_node
from subjects.tikv.pd_client import PDClient, PDError, PDUnreachable

RESTART_WAIT_S = 30.0


async def _host(pd: PDClient, method: str, path: str) -> Any:
    try:
        response = await pd.request(method, f"/host/v1/{path}")
        return response.json()
    except PDError as e:
        raise ActionFailed(f"host control refused {method} {path}: {e.message}") from e
    except PDUnreachable as e:
        raise ActionFailed(f"host control unreachable: {e}", retryable=True) from e


async def _process(pd: PDClient, store_id: int) -> dict[str, Any] | None:
    for entry in await _host(pd, "GET", "stores"):
        if int(entry.get("id", -1)) == store_id:
            return entry
    return None


def host_actions(pd: PDClient) -> list[ActionDef]:
    """`pd`: a client for the host agent's URL."""
    async def exists(obs: Observation, p: StoreParams) -> list[str]:
        if store_node(obs, p.store_id) is None:
            return [f"store {p.store_id} does not exist"]
        return []

    async def restart(p: StoreParams, ctx: ActionContext) -> ActionOutcome:
        await _host(pd, "POST", f"stores/{p.store_id}/restart")
        deadline = time.monotonic() + min(RESTART_WAIT_S, ctx.timeout_s * 0.8)
        while time.monotonic() < deadline:
            entry = await _process(pd, p.store_id)
            if entry and entry.get("running"):
                address = entry.get("status_address", "")
                if address and await _answers(address):
                    return ActionOutcome(detail=f"store {p.store_id} restarted; its status port answers",
                                         data={"status_address": address})
            ctx.progress(f"waiting for store {p.store_id} to come up")
            await asyncio.sleep(0.2)
        raise ActionFailed(f"store {p.store_id} did not come back within {RESTART_WAIT_S:g} s of the restart")

    async def stop(p: StoreParams, ctx: ActionContext) -> ActionOutcome:
        await _host(pd, "POST", f"stores/{p.store_id}/stop")
        entry = await _process(pd, p.store_id)
        if entry and entry.get("running"):
            raise ActionFailed(f"store {p.store_id} is still running after the stop")
        return ActionOutcome(detail=f"store {p.store_id} stopped")

    async def reconcile_restart(_obs: Observation, p: StoreParams) -> Reconciliation:
        entry = await _process(pd, p.store_id)
        running = bool(entry and entry.get("running"))
        return Reconciliation(took_effect=running, detail=f"store {p.store_id} {'runs' if running else 'is stopped'}")

    async def reconcile_stop(_obs: Observation, p: StoreParams) -> Reconciliation:
        entry = await _process(pd, p.store_id)
        stopped = bool(entry) and not entry.get("running")
        return Reconciliation(took_effect=stopped, detail=f"store {p.store_id} {'is stopped' if stopped else 'runs'}")

    return [
        ActionDef("restart_node", "Restart the TiKV process of a store through the host's control agent "
                  "(brings a dead or hung store back).", StoreParams, RiskTier.high, True,
                  lambda p: f"store:{p.store_id}", exists, restart,
                  lambda p: f"POST /host/v1/stores/{p.store_id}/restart", reconcile_restart),
        ActionDef("stop_node", "Stop the TiKV process of a store through the host's control agent.", StoreParams,
                  RiskTier.high, True, lambda p: f"store:{p.store_id}", exists, stop,
                  lambda p: f"POST /host/v1/stores/{p.store_id}/stop", reconcile_stop),
    ]


async def _answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1.0)
    except (OSError, TimeoutError, ValueError):
        return False
    writer.close()
    return True


# -- the lab: the simulator as a background process ------------------------------------------

class LabError(PluginError):
    pass


def state_file(run_dir: Path) -> Path:
    return run_dir / "state.json"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        return False
    return True


def lab_status(run_dir: Path) -> dict[str, Any] | None:
    path = state_file(run_dir)
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    state["alive"] = _alive(int(state["pid"]))
    return state


def lab_up(run_dir: Path, *, port: int = 2379, stores: int = 5, regions: int = 200, time_scale: float = 1.0,
           seed: int = 0, wait_s: float = 30.0) -> dict[str, Any]:
    """Start `operator-tui sim tikv` detached; returns once its PD API answers."""
    current = lab_status(run_dir)
    if current and current["alive"]:
        owner = "a console's embedded simulator" if current.get("embedded") else "a TiKV lab"
        raise LabError(f"{owner} is already up at {current['pd_url']} (pid {current['pid']}); "
                       + ("quit that console first" if current.get("embedded") else "`operator-tui lab down tikv` first"))
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "sim.log"
    cmd = [sys.executable, "-m", "operator_tui", "sim", "tikv", "--port", str(port), "--stores", str(stores),
           "--regions", str(regions), "--time-scale", str(time_scale), "--seed", str(seed)]
    with open(log_path, "ab") as log, open(run_dir / "sim.out", "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + wait_s
    pd_url = admin_url = host_agent_url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text()[-400:].strip().splitlines()
            raise LabError(f"the simulator exited with status {proc.returncode}: {tail[-1] if tail else ''}")
        text = (run_dir / "sim.out").read_text()
        if "listening on " in text and "host agent (restart, stop) on " in text:
            pd_url = text.split("listening on ", 1)[1].split()[0]
            admin_url = text.split("admin API (faults, workload) on ", 1)[1].split()[0]
            host_agent_url = text.split("host agent (restart, stop) on ", 1)[1].split()[0]
            break
        time.sleep(0.1)
    if pd_url is None:
        os.killpg(proc.pid, signal.SIGKILL)
        raise LabError(f"the simulator did not start within {wait_s:g} s (see {log_path})")
    state = {"pid": proc.pid, "pd_url": pd_url, "admin_url": admin_url, "host_agent_url": host_agent_url,
             "port": port, "stores": stores, "regions": regions,
             "time_scale": time_scale, "seed": seed, "log": str(log_path)}
    state_file(run_dir).write_text(json.dumps(state, indent=2))
    return state


def lab_down(run_dir: Path, grace_s: float = 5.0) -> str:
    state = lab_status(run_dir)
    if state is None:
        raise LabError(f"no TiKV lab is up (no state in {run_dir})")
    pid = int(state["pid"])
    if state.get("embedded") and state["alive"]:
        # The console's own simulator: stopping it means quitting that console, not signalling it.
        raise LabError(f"the simulator at {state['pd_url']} belongs to a running console (pid {pid}); quit the "
                       "console to stop it")
    if state["alive"]:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    state_file(run_dir).unlink(missing_ok=True)
    return f"stopped the simulator (pid {pid}) at {state['pd_url']}"


# -- a running process's own simulator, advertised where `chaos` and `lab status` look -------------

def advertise_embedded(run_dir: Path, pd_url: str, admin_url: str, host_agent_url: str) -> bool:
    """Write {"pid", "pd_url", "admin_url", "host_agent_url", "embedded": true} so `operator-tui chaos ... --subject tikv` can hit
    the simulator this process runs, unless a live lab (or another process) owns the file."""
    try:
        current = lab_status(run_dir)
    except (OSError, ValueError, KeyError):
        current = None  # unreadable: ours to replace
    if current and current.get("alive") and int(current.get("pid", 0)) != os.getpid():
        return False
    run_dir.mkdir(parents=True, exist_ok=True)
    path = state_file(run_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "pd_url": pd_url, "admin_url": admin_url,
                               "host_agent_url": host_agent_url, "embedded": True}, indent=2))
    tmp.replace(path)
    return True


def withdraw_embedded(run_dir: Path) -> None:
    """Remove the advertisement, if it is still this process's."""
    path = state_file(run_dir)
    try:
        owner = json.loads(path.read_text()).get("pid")
    except (OSError, ValueError):
        return
    if owner == os.getpid():
        path.unlink(missing_ok=True)


class TiKVLab:
    """`operator-tui lab up|down|status tikv`: the simulator as a background process."""

    def up(self, run_dir: Path, options: dict[str, Any]) -> LabReport:
        state = lab_up(run_dir, port=options.get("port", 2379), stores=options.get("stores", 5),
                       regions=options.get("regions", 200), time_scale=options.get("time_scale", 1.0),
                       seed=options.get("seed", 0))
        return LabReport([
            f"tikv lab up: simulator pid {state['pid']}, PD at {state['pd_url']} ({state['stores']} stores, "
            f"{state['regions']} regions, time-scale {state['time_scale']:g})",
            f"  watch it:  operator-tui --pd {state['pd_url']} --host-agent {state['host_agent_url']}",
            f"  faults:    operator-tui chaos inject KIND (admin API {state['admin_url']})",
        ], state)

    def down(self, run_dir: Path) -> LabReport:
        return LabReport([lab_down(run_dir)])

    def status(self, run_dir: Path) -> LabReport:
        state = lab_status(run_dir)
        if state is None:
            return LabReport(["tikv lab: not up"], {"up": False})
        line = (f"tikv lab: simulator pid {state['pid']} {'running' if state['alive'] else 'DEAD'} at "
                f"{state['pd_url']} ({state.get('stores', '?')} stores)")
        return LabReport([line], {"up": bool(state["alive"]), **state})


LAB = TiKVLab()
