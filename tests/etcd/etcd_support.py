"""Helpers shared by the etcd tests: labs on an address block of their own, faults through the chaos
module, observation helpers, and the proof that a lab left nothing behind."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from subjects import netfault, processes
from subjects.base import ActionContext, ActionDef, ActionOutcome, FaultRecord, Observation, Violation
from subjects.etcd import chaos
from subjects.etcd.lab import EtcdLab, address_free, mounted
from subjects.etcd.subject import EtcdSubject, build

PORT_RANGE = (20_000, 32_000)


def free_block() -> tuple[str, int, int]:
    """An address block 127.X.Y (nobody else's: X in 100..250) and a client and peer port on it."""
    rng = random.Random()
    for _ in range(200):
        block = f"127.{rng.randrange(100, 250)}.{rng.randrange(0, 250)}"
        client, peer = rng.randrange(*PORT_RANGE), rng.randrange(*PORT_RANGE)
        if client != peer and all(address_free(f"{block}.{i}", p) for i in range(1, 6) for p in (client, peer)):
            return block, client, peer
    raise RuntimeError("no free address block found")


def make_lab(tmp: Path, members: int = 3, load: bool = False, load_rate: float = 20.0) -> EtcdLab:
    lab = EtcdLab(tmp)
    block, client, peer = free_block()
    lab.up(members=members, block=block, client_port=client, peer_port=peer, load=load, load_rate=load_rate)
    return lab


def module_lab(name: str, load: bool = False) -> Any:
    """A module-scoped `lab` fixture: one lab per test module, torn down (and proven gone) after it."""
    @pytest.fixture(scope="module")
    def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdLab]:
        lab = make_lab(tmp_path_factory.mktemp(name), load=load)
        try:
            yield lab
        finally:
            teardown_lab(lab)
    return lab


def leftovers(lab: EtcdLab, state: Any) -> list[str]:
    """What of a lab still exists: processes, listeners, mounts, chains, its cgroup, its state file."""
    left = [f"{r.name} (pid {r.pid})" for r in state.processes.values() if processes.is_live(r)]
    left += [f"{m.address}:{p}" for m in state.members for p in (state.client_port, state.peer_port)
             if not address_free(m.address, p)]
    left += [f"mount {m.folder}" for m in state.members if mounted(m.folder)]
    left += [f"chain {c}" for c in state.chains if not netfault.Chain(c).gone()]
    left += [f"chain {line}" for line in subprocess.run(["iptables", "-S"], capture_output=True, text=True)
             .stdout.splitlines() if f"etcd-{state.lab_id}" in line]
    if state.cgroup_root and (netfault.CGROUP_ROOT / state.cgroup_root).exists():
        left.append(f"cgroup {state.cgroup_root}")
    if lab.state_path.exists():
        left.append(str(lab.state_path))
    return left


def teardown_lab(lab: EtcdLab) -> None:
    """`lab down`, then make sure (whatever happened) that nothing of the lab survives the test."""
    state = lab.state
    try:
        lab.down()
    finally:
        for rec in state.processes.values():
            if processes.is_live(rec):
                processes.send(rec, signal.SIGCONT)
                processes.send(rec, signal.SIGKILL)
                processes.wait_dead(rec, 5.0)
        for chain in state.chains:
            netfault.Chain(chain).delete()
        for m in state.members:
            if mounted(m.folder):
                subprocess.run(["umount", "-l", m.folder], check=False)
        if state.cgroup_root:
            netfault.cgroup_remove(state.cgroup_root)
    assert leftovers(lab, state) == []


async def subject_for(lab: EtcdLab, options: dict[str, Any] | None = None, **thresholds: Any) -> EtcdSubject:
    return await build({"lab_dir": str(lab.run_dir), "thresholds": thresholds, **(options or {})})


async def inject(lab: EtcdLab, kind: str, target: str | None = None, **params: Any) -> FaultRecord:
    return await chaos.inject({"lab_dir": str(lab.run_dir)}, kind, target, params)


async def revert(lab: EtcdLab, record: FaultRecord) -> str:
    return await chaos.revert({"lab_dir": str(lab.run_dir)}, record)


def seconds_since(record: FaultRecord, when: datetime) -> float:
    """From the fault's injection (as its record says) to `when`."""
    return (when - datetime.fromisoformat(record.undo["lab_record"]["injected_at"])).total_seconds()


def violations(subject: EtcdSubject, obs: Observation, invariant: str, history: list[Observation] | None = None
               ) -> list[Violation]:
    inv = next(i for i in subject.invariants() if i.name == invariant)
    if not obs.reachable and not inv.on_unreachable:
        return []
    return inv.evaluate(obs, history or []).violations


async def until(subject: EtcdSubject, predicate: Callable[[Observation], Any], timeout: float = 20.0,
                what: str = "condition", interval: float = 0.25) -> Observation:
    """Observe until `predicate(observation)` holds; fail naming the last observation's state."""
    deadline = time.monotonic() + timeout
    obs = await subject.observe()
    while not predicate(obs):
        if time.monotonic() > deadline:
            states = {n.id: (n.state.value, n.role, n.state_detail) for n in obs.nodes}
            raise AssertionError(f"{what} not reached in {timeout} s; members: {states}; error: {obs.error}")
        await asyncio.sleep(interval)
        obs = await subject.observe()
    return obs


async def fires(subject: EtcdSubject, invariant: str, entity: str | None = None, timeout: float = 20.0
                ) -> Violation:
    found: list[Violation] = []

    def check(obs: Observation) -> bool:
        found[:] = [v for v in violations(subject, obs, invariant) if entity is None or v.entity == entity]
        return bool(found)

    await until(subject, check, timeout, f"{invariant} firing on {entity or 'anything'}")
    return found[0]


async def clears(subject: EtcdSubject, invariant: str, timeout: float = 20.0) -> None:
    await until(subject, lambda obs: obs.reachable and not violations(subject, obs, invariant), timeout,
                f"{invariant} clear")


def leader(obs: Observation) -> str:
    name = obs.details.get("leader")
    assert name, f"no leader agreed: {obs.details.get('leaders_seen')}"
    return name


async def healthy(subject: EtcdSubject, members: int = 3, timeout: float = 30.0) -> Observation:
    """Every member up, one leader agreed, no alarm: what each test leaves behind."""
    return await until(subject, lambda o: o.reachable and o.details.get("leader") is not None
                       and sum(1 for n in o.nodes if n.state.value == "up") == members
                       and not o.details.get("alarms"), timeout, f"{members} healthy members")


def action(subject: EtcdSubject, name: str) -> ActionDef:
    return next(a for a in subject.actions() if a.name == name)


async def problems(subject: EtcdSubject, name: str, **params: Any) -> list[str]:
    a = action(subject, name)
    return await a.precheck(await subject.observe(), a.params.model_validate(params))


async def run(subject: EtcdSubject, name: str, **params: Any) -> ActionOutcome:
    """As the engine does it: precheck on a fresh observation, then execute."""
    a = action(subject, name)
    p = a.params.model_validate(params)
    found = await a.precheck(await subject.observe(), p)
    assert found == [], f"{name} refused: {found}"
    return await a.execute(p, ActionContext())
