"""Fixtures for the agent's diagnosers: a real store, a real engine, a real ticket and session on
the toy subject (agent_support.py), and the fake Messages API server (a real HTTP server on
127.0.0.1)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from agent_support import Setup, ToySubject
from fakes.messages_api import API_KEY, FakeMessagesAPI

from operator_tui.actions.engine import ActionEngine
from operator_tui.agent.embedded import EmbeddedDiagnoser
from operator_tui.agent.loop import Agent, Recorder
from operator_tui.config import ActionSettings
from operator_tui.store import Store, TickWrite


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeMessagesAPI]:
    api = FakeMessagesAPI()
    await api.start()
    try:
        yield api
    finally:
        await api.stop()
    api.raise_step_errors()  # an assertion inside a scripted step fails the test that ran it


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    return API_KEY


@pytest.fixture
async def setup(store: Store, fake_api: FakeMessagesAPI, api_key: str) -> AsyncIterator[Setup]:
    """A run with one open ticket (node_stuck on node:2), claimed by a session, and its context."""
    subject = ToySubject()
    run_id = await store.start_run("test", subject.name)
    engine = ActionEngine(store, subject, run_id, ActionSettings(backoff_base_s=0.01), poll_interval=0.02)
    obs = await subject.observe()
    violation = subject.invariants()[0].check(obs, [])[0]
    samples = [("node:2", "load", v) for v in (0.5, 0.8, 0.97)] + [("cluster", "qps", 100.0)]
    result = await store.apply_tick(TickWrite(run_id=run_id, samples=samples, open=[violation]))
    ticket = result.opened[0]
    agent = Agent(store, subject, engine, run_id, EmbeddedDiagnoser())
    context = await agent.gather(ticket, 1)
    session_id = await store.claim_ticket(ticket.id, run_id, f"toy|{ticket.entity}", "claude", 1)
    assert session_id is not None
    record = Recorder(store, session_id, ticket, None)
    yield Setup(store, subject, engine, run_id, ticket, session_id, record, context, fake_api)
    await engine.stop()
