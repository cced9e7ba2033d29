"""Helpers shared by the simulator's tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from subjects.tikv.sim import ManualClock, SimConfig, SimServer
from subjects.tikv.sim.model import Cluster

T = TypeVar("T")
START = 1_735_000_000.0
PD = "/pd/api/v1"


class Manual:
    """A SimServer whose time moves only when the test says so, plus HTTP clients for it: PD's
    port, and the admin listener (where every /sim/v1 path goes; PD's port does not serve them)."""

    def __init__(self, server: SimServer, clock: ManualClock, client: httpx.AsyncClient,
                 admin: httpx.AsyncClient) -> None:
        self.server = server
        self.clock = clock
        self.client = client
        self.admin = admin

    def _for(self, path: str) -> httpx.AsyncClient:
        return self.admin if path.startswith("/sim/") else self.client

    @property
    def cluster(self) -> Cluster:
        return self.server.cluster

    def advance(self, seconds: float, step: float = 1.0) -> None:
        """Move simulated time forward in steps, as the tick loop would."""
        target = self.clock.now() + seconds
        while self.clock.now() < target:
            self.clock.set(min(target, self.clock.now() + step))
            self.server.sync()

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self._for(path).get(path, **kw)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self._for(path).post(path, **kw)

    async def delete(self, path: str, **kw: Any) -> httpx.Response:
        return await self._for(path).delete(path, **kw)

    async def store(self, sid: int) -> dict[str, Any]:
        r = await self.get(f"{PD}/store/{sid}")
        assert r.status_code == 200, r.text
        return r.json()

    async def inject(self, **body: Any) -> dict[str, Any]:
        r = await self.post("/sim/v1/faults", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    async def revert(self, fault_id: str) -> dict[str, Any]:
        r = await self.delete(f"/sim/v1/faults/{fault_id}")
        assert r.status_code == 200, r.text
        return r.json()


def small_config(**overrides: Any) -> SimConfig:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "stores": 5,
        "regions": 60,
        "replicas": 3,
        "seed": 7,
    }
    values.update(overrides)
    return SimConfig(**values)


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll until predicate() is truthy; generous deadlines keep loaded CI machines green."""
    deadline = time.monotonic() + timeout
    last: T = predicate()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
        time.sleep(interval)
        last = predicate()
    return last


def make_cluster(**overrides: Any) -> Cluster:
    """A bare model (no server) on a manual timeline starting at START."""
    return Cluster(small_config(**overrides), START)


def advance(c: Cluster, seconds: float, step: float = 1.0) -> None:
    target = c.now + seconds
    while c.now < target:
        c.advance_to(min(target, c.now + step))
