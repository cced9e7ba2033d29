"""Console test helpers: apps fed by messages (no live timing), apps on a real store, and data in it."""

from __future__ import annotations

import os

# Before Textual is imported anywhere: no animations, so screenshots never catch one half-way.
os.environ["TEXTUAL_ANIMATIONS"] = "none"

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from operator_tui.actions.states import ActionState
from operator_tui.app import OperatorApp, make_app
from operator_tui.store import Store, TickWrite
from subjects.base import Severity, Violation
from tests.console import samples

SIZE = (160, 48)


def fed_app(**kw: Any) -> OperatorApp:
    """A console with no store and no workers: tests post the messages the workers would."""
    app = make_app(samples.settings(**kw), live=False, open_store=False, clock=samples.frozen_clock,
                   cursor_blink=False)
    app.animation_level = "none"
    return app


def store_app(db: Path, **kw: Any) -> OperatorApp:
    """A console on a real store (polled every 50 ms), without a subject or workers of its own."""
    app = make_app(samples.settings(db=db, **kw), live=False, open_store=True, clock=samples.frozen_clock,
                   cursor_blink=False, poll_interval=0.05)
    app.animation_level = "none"
    return app


async def until(pilot: Any, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.02)


async def until_async(pilot: Any, predicate: Callable[[], Awaitable[bool]], timeout: float = 5.0,
                      what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.02)


async def awaiting_action(store: Store, *, name: str = "restart_node", store_id: int = 2,
                          ticket_id: int | None = None, session_id: int | None = None,
                          run_id: int | None = None) -> int:
    """An action awaiting approval, requested by a live run (this test process's, unless given)."""
    if run_id is None:
        run_id = await store.start_run("test", "tikv")
    record = await store.create_action(name=name, params={"store_id": store_id}, target=f"store:{store_id}",
                                       risk="high", idempotent=True, requested_by="agent",
                                       preview=f"POST /sim/v1/stores/{store_id}/restart", run_id=run_id,
                                       ticket_id=ticket_id, session_id=session_id)
    await store.transition_action(record.id, ActionState.validated, "system", "parameters and precheck passed")
    await store.transition_action(record.id, ActionState.awaiting_approval, "system",
                                  "approval required (mode execute, approval all)")
    return record.id


async def open_ticket(store: Store, run_id: int, entity: str = "store:2",
                      invariant: str = "store_unreachable") -> int:
    violation = Violation(invariant=invariant, entity=entity, severity=Severity.critical,
                          summary=f"{entity} does not answer on its status port",
                          evidence={"status_port": "connection refused"})
    result = await store.apply_tick(TickWrite(run_id=run_id, open=[violation]))
    return result.opened[0].id


@pytest.fixture
def snap_settings() -> Any:
    return samples.settings()
