"""Runs: every row of work belongs to one (a console session, a headless run, a CLI call, a trial).

A run's process holds a lock while it lives (see liveness.py), so that another process can tell,
whatever its PID namespace, that a run died and take over what it left: `reap_dead_runs` marks
such runs ended with status `died`.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from operator_tui.store.audit import append_audit
from operator_tui.store.db import Database, dumps, loads
from operator_tui.store.liveness import RunLock, lock_dir, lock_path, run_alive, this_process
from operator_tui.store.models import Run
from operator_tui.timeutil import now_text


def run_from_row(row: Any) -> Run:
    data = dict(row)
    data["config"] = loads(data["config"], {})
    return Run.model_validate(data)


class RunsRepo:
    db: Database

    async def start_run(self, kind: str, subject: str, config: dict[str, Any] | None = None,
                        cluster: str | None = None) -> int:
        me = this_process()
        # Locked before the row exists, renamed to the run's id before the row is committed: no
        # other process can ever see this run without its lock.
        lock = RunLock.take(lock_dir(self.db.path) / f"new-{os.getpid()}-{uuid.uuid4().hex[:8]}.lock")
        try:
            async with self.db.transaction() as conn:
                cur = await conn.execute(
                    "INSERT INTO runs(kind, subject, started_at, status, pid, host, config, cluster, proc_start,"
                    " pid_ns, boot_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (kind, subject, now_text(), "running", me.pid, socket.gethostname(), dumps(config or {}),
                     cluster, me.start, me.pid_ns, me.boot_id),
                )
                run_id = cur.lastrowid
                lock.rename(lock_path(self.db.path, run_id))
        except BaseException:
            lock.release()
            raise
        self.db.run_locks[run_id] = lock
        return run_id

    async def end_run(self, run_id: int, status: str = "completed") -> None:
        await self.db.write(
            "UPDATE runs SET ended_at = ?, status = ? WHERE id = ? AND ended_at IS NULL",
            (now_text(), status, run_id),
        )
        lock = self.db.run_locks.pop(run_id, None)
        if lock is not None:
            lock.release()

    def owns_run(self, run_id: int | None) -> bool:
        """Whether this process (through this store) runs it."""
        return run_id in self.db.run_locks

    async def run_is_live(self, run_id: int | None) -> bool:
        if run_id is None:
            return False
        if self.owns_run(run_id):
            return True
        row = await self.db.fetchone("SELECT * FROM runs WHERE id = ?", (run_id,))
        return row is not None and row["ended_at"] is None and run_alive(row, self.db.path)

    async def reap_dead_runs(self) -> list[int]:
        """Runs whose process died without ending them: marked ended (`died`), audited. Returns
        their ids (only those this call marked)."""
        rows = await self.db.fetchall("SELECT * FROM runs WHERE ended_at IS NULL")
        dead = [r for r in rows if not self.owns_run(r["id"]) and not run_alive(r, self.db.path)]
        reaped = []
        for r in dead:
            at = now_text()
            async with self.db.transaction() as conn:
                cur = await conn.execute(
                    "UPDATE runs SET ended_at = ?, status = 'died' WHERE id = ? AND ended_at IS NULL", (at, r["id"]))
                if not cur.rowcount:
                    continue  # another process reaped it first
                await append_audit(conn, "system", "run.died", f"run:{r['id']}",
                                   {"kind": r["kind"], "pid": r["pid"], "host": r["host"], "pid_ns": r["pid_ns"],
                                    "started_at": r["started_at"]}, r["id"])
            try:
                os.unlink(lock_path(self.db.path, r["id"]))
            except OSError:
                pass
            reaped.append(r["id"])
        return reaped

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
