"""The eval browser's tests: one store with the fixture campaigns (passing, with failures,
running), written once per session; consoles on it (offline, polled every 50 ms)."""

from __future__ import annotations

import asyncio
import os

os.environ["TEXTUAL_ANIMATIONS"] = "none"

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from operator_tui.app import OperatorApp, make_app
from operator_tui.store import Store
from tests.browser.fixture_campaigns import write_campaign
from tests.console import samples

SIZE = (160, 48)
PASSING, FAILURES, RUNNING = 1, 2, 3


@pytest.fixture(scope="session")
def eval_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("eval-browser")
    db = folder / "eval.db"

    async def build() -> None:
        store = await Store.open(db)
        try:
            for kind, expected in (("passing", PASSING), ("failures", FAILURES), ("running", RUNNING)):
                assert await write_campaign(store, folder, kind) == expected
        finally:
            await store.close()

    asyncio.run(build())
    yield db


def browse_app(db: Path, campaign: int | None = None) -> OperatorApp:
    """What `operator-tui eval browse [ID]` runs, on a frozen clock, polling fast."""
    app = make_app(samples.settings(db=db), live=False, open_store=True, clock=samples.frozen_clock,
                   cursor_blink=False, poll_interval=0.05, mode="eval", browse_campaign=campaign)
    app.animation_level = "none"
    return app


def fixed_status(app: Any) -> None:
    """The status bar names the store's path: a temporary one would change every snapshot."""
    app.state.store_path = "eval.db"
    app.screen.render_state("all")
