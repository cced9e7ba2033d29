"""Helpers for the rate limiter's evaluation adapter tests: trial labs on free address blocks,
polling the oracle, and proof that nothing of a lab or a fault is left on the host."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from subjects import netfault, tmpfs
from subjects.evaluation import AddressBlock, LabRequest, Manifest, OracleCheck
from subjects.ratelimiter.addresses import FIRST_SLOT_OCTET
from subjects.ratelimiter.evaluation import ADAPTER
from tests.ratelimiter.rl_support import free_block_lab

FAST_LAB = {"nodes": 3, "heartbeat_ms": 200, "node_ttl_ms": 1000, "redis_timeout_ms": 300, "redis_disk_mb": 8}


def free_block(nodes: int = 3, slot: int | None = None, port_base: int | None = None) -> AddressBlock:
    """A slot block whose lab endpoints are all free. Slots are drawn high (100..244) so that other
    tests' slots rarely share a block; the ports are free on these addresses either way."""
    first = FIRST_SLOT_OCTET
    octets = range(slot + first, slot + first + 1) if slot is not None else range(100 + first, 245 + first)
    block, base = free_block_lab(nodes, octets, port_base)
    return AddressBlock.for_slot(int(block.split(".")[1]) - first, base)


def request(trial_dir: Path, block: AddressBlock, **options) -> LabRequest:
    return LabRequest(block, trial_dir, f"t{uuid.uuid4().hex[:10]}", 7, {**FAST_LAB, **options})


def reset(req: LabRequest) -> Manifest:
    return asyncio.run(ADAPTER.reset(req))


def teardown(manifest: Manifest) -> None:
    """Tear the lab down and prove nothing of it is left (processes, mount, cgroup)."""
    asyncio.run(ADAPTER.teardown(manifest))
    left = asyncio.run(ADAPTER.leftovers(manifest))
    assert not left, left
    for path in manifest.mounts:
        assert not tmpfs.is_mounted(path)
        assert path not in findmnt_tmpfs()
    for path in manifest.cgroups:
        assert not (netfault.CGROUP_ROOT / path).exists()


def findmnt_tmpfs() -> str:
    return subprocess.run(["findmnt", "-t", "tmpfs", "-n", "-o", "TARGET"], capture_output=True, text=True).stdout


def iptables_listing() -> str:
    return subprocess.run(["iptables", "-S"], capture_output=True, text=True, check=True).stdout


def failing(checks: list[OracleCheck]) -> list[tuple[str, str, str]]:
    return [(c.check, c.entity, c.detail) for c in checks if not c.ok]


async def oracle_until(manifest: Manifest, want_clean: bool, timeout_s: float = 20.0,
                       baseline: dict | None = None) -> list[OracleCheck]:
    """Ask the oracle once a second (as the harness does) until it is clean (or dirty)."""
    deadline = time.monotonic() + timeout_s
    while True:
        checks = await ADAPTER.oracle(manifest, baseline, [])
        clean = all(c.ok for c in checks)
        if clean == want_clean:
            return checks
        if time.monotonic() > deadline:
            raise AssertionError(f"oracle not {'clean' if want_clean else 'dirty'} after {timeout_s}s: "
                                 f"{failing(checks)}")
        await asyncio.sleep(0.5)


async def poll(predicate: Callable[[], Awaitable[object]], timeout_s: float = 20.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.25)
