"""Fixtures for the simulator's tests: a server on a manual clock, a live threaded one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from tikv_sim_helpers import START, Manual, small_config

from subjects.tikv.sim import ManualClock, SimServer, SimThread, start_sim_thread


@pytest_asyncio.fixture
async def make_manual() -> AsyncIterator[Callable[..., Any]]:
    """Factory: `await make_manual(**config overrides)` -> Manual; everything is stopped afterwards."""
    started: list[Manual] = []

    async def make(**overrides: Any) -> Manual:
        clock = ManualClock(START)
        server = SimServer(small_config(**overrides), clock=clock)
        await server.start()
        client = httpx.AsyncClient(base_url=server.pd_url, timeout=10.0)
        admin = httpx.AsyncClient(base_url=server.admin_url, timeout=10.0)
        m = Manual(server, clock, client, admin)
        started.append(m)
        return m

    yield make
    for m in started:
        await m.client.aclose()
        await m.admin.aclose()
        await m.server.stop()


@pytest_asyncio.fixture
async def sim(make_manual: Callable[..., Any]) -> Manual:
    return await make_manual()


@pytest.fixture
def live() -> Iterator[SimThread]:
    """A threaded simulator at a high time scale (100 simulated seconds per wall second)."""
    thread = start_sim_thread(small_config(time_scale=100.0, max_store_down_time="3m"))
    try:
        yield thread
    finally:
        thread.stop()
