"""Runs: every row of work belongs to one (a console session, a headless run, a CLI call, a trial)."""

from __future__ import annotations

import os
import socket
from typing import Any

from operator_tui.store.db import Database, dumps, loads
from operator_tui.store.models import Run
from operator_tui.timeutil import now_text


def run_from_row(row: Any) -> Run:
    data = dict(row)
    data["config"] = loads(data["config"], {})
    return Run.model_validate(data)


class RunsRepo:
    db: Database

    async def start_run(self, kind: str, subject: str, config: dict[str, Any] | None = None) -> int:
        return await self.db.write(
            "INSERT INTO runs(kind, subject, started_at, status, pid, host, config) VALUES (?,?,?,?,?,?,?)",
            (kind, subject, now_text(), "running", os.getpid(), socket.gethostname(), dumps(config or {})),
        )

    async def end_run(self, run_id: int, status: str = "completed") -> None:
        await self.db.write(
            "UPDATE runs SET ended_at = ?, status = ? WHERE id = ? AND ended_at IS NULL",
            (now_text(), status, run_id),
        )

    async def get_run(self, run_id: int) -> Run | None:
        row = await self.db.fetchone("SELECT * FROM runs WHERE id = ?", (run_id,))
        return None if row is None else run_from_row(row)

    async def list_runs(self, limit: int = 50) -> list[Run]:
        rows = await self.db.fetchall("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        return [run_from_row(r) for r in rows]

    async def latest_run_id(self, kind: str | None = None) -> int | None:
        if kind is None:
            return await self.db.scalar("SELECT max(id) FROM runs")
        return await self.db.scalar("SELECT max(id) FROM runs WHERE kind = ?", (kind,))
