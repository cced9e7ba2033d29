"""`operator-tui demo ratelimiter --docker` end to end on the real local engine: every chapter plays
on the containerised lab (load from a container of its own, n2's container killed through the
engine, the agent restarting it), and when the demo ends no container with the lab's labels is left."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from containers import nodes
from operator_tui.app import make_app
from operator_tui.commands.demo import demo_script
from operator_tui.config import Settings
from operator_tui.demo.director import DemoOptions
from operator_tui.store import Store
from tests.console.conftest import SIZE

pytestmark = pytest.mark.slow
LAB_PARTS = {"redis", "proxy", "n1", "n2", "n3", "loadgen"}


async def test_the_rate_limiter_demo_plays_through_on_containers(docker_client: Any, tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    settings = Settings.model_validate({"db": db, "subject": "ratelimiter", "lab_dir": tmp_path / "labs" / "demo"})
    folder = settings.lab_folder()
    script = demo_script("ratelimiter", None, docker=True)
    assert script.lab["docker"] is True and [c.fault.kind for c in script.chapters if c.fault] == ["node_kill"]
    app = make_app(settings, cursor_blink=False, demo=DemoOptions(script, autoplay=True, speed=10))
    app.animation_level = "none"
    seen: set[str] = set()  # the lab's parts the engine listed while the demo ran
    try:
        started = time.monotonic()
        async with app.run_test(size=SIZE):
            while app.return_code is None and time.monotonic() - started < 240:
                listed = await asyncio.to_thread(nodes.of_lab, docker_client, folder)
                seen |= {(c.labels or {}).get(nodes.LABEL_NODE, "") for c in listed}
                await asyncio.sleep(0.5)
        assert app.return_code == 0, f"missed: {app.director.missed}"
        assert app.director.finished and app.director.missed == []
        assert seen == LAB_PARTS  # the lab ran as containers, the load generator's included
        async with await Store.open(db) as store:
            [run] = await store.list_runs()
            assert (run.kind, run.status) == ("demo", "completed")
            [ticket] = [t for t in await store.list_tickets(run_id=run.id) if t.id == app.director.ticket_id]
            assert (ticket.invariant, ticket.entity, ticket.status) == ("node_down", "node:n2", "resolved")
            assert ticket.resolution["by"] == "agent" and ticket.resolution["verification"]["holds"] is True
            actions = [(a.name, a.params, a.state) for a in await store.list_actions(ticket_id=ticket.id)]
            assert ("restart_node", {"node_id": "n2"}, "succeeded") in actions
            [fault] = await store.list_faults()
            assert (fault.kind, fault.target, fault.status, fault.actor) == ("node_kill", "n2", "reverted", "demo")
        assert app.demo_lab is not None and app.demo_lab.problem == ""
        assert not (folder / "state.json").exists()
        # Each container's log is kept in the lab folder when the lab is removed.
        assert {p.stem for p in (folder / "logs").glob("*.log")} >= LAB_PARTS
    finally:
        left = [c.name for c in nodes.of_lab(docker_client, folder)]
        nodes.remove_lab(docker_client, folder)  # a failed run leaves nothing behind either
    assert left == [], f"containers of the demo's lab left: {left}"
