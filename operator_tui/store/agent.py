"""Agent sessions: one per attempt at a ticket, claimed atomically (one running session per entity)."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from operator_tui.store.db import Database, dumps, loads
from operator_tui.store.models import AgentSession, AgentStep
from operator_tui.store.tickets import add_ticket_event, move_ticket
from operator_tui.timeutil import now_text
from subjects.base import TicketStatus


def session_from_row(row: Any) -> AgentSession:
    data = dict(row)
    data["diagnosis"] = loads(data["diagnosis"])
    data["verification"] = loads(data["verification"])
    return AgentSession.model_validate(data)


class AgentRepo:
    db: Database

    async def claim_ticket(self, ticket_id: int, run_id: int, claim_key: str, diagnoser: str,
                           attempt: int) -> int | None:
        """Start a session on an open ticket; None if the ticket is not open or its entity is taken."""
        at = now_text()
        async with self.db.transaction() as conn:
            async with conn.execute("SELECT status, entity FROM tickets WHERE id = ?", (ticket_id,)) as cur:
                row = await cur.fetchone()
            if row is None or row["status"] != TicketStatus.open.value:
                return None
            try:
                cur = await conn.execute(
                    "INSERT INTO agent_sessions(run_id, ticket_id, entity, claim_key, diagnoser, attempt, status,"
                    " started_at, owner_pid) VALUES (?,?,?,?,?,?,?,?,?)",
                    (run_id, ticket_id, row["entity"], claim_key, diagnoser, attempt, "running", at, os.getpid()),
                )
            except sqlite3.IntegrityError:
                return None  # another session already works on this entity
            session_id = cur.lastrowid
            await conn.execute(
                "UPDATE tickets SET status = ?, updated_at = ? WHERE id = ?",
                (TicketStatus.investigating.value, at, ticket_id),
            )
            await add_ticket_event(conn, ticket_id, "claimed", TicketStatus.investigating.value, "agent",
                                   {"session_id": session_id, "diagnoser": diagnoser, "attempt": attempt}, at)
            return session_id

    async def add_step(self, session_id: int, kind: str, title: str, content: Any = None) -> int:
        return await self.db.write(
            "INSERT INTO agent_steps(session_id, at, kind, title, content) VALUES (?,?,?,?,?)",
            (session_id, now_text(), kind, title, dumps(content)),
        )

    async def update_session(self, session_id: int, **fields: Any) -> None:
        for key in ("diagnosis", "verification"):
            if key in fields:
                fields[key] = dumps(fields[key])
        sets = ", ".join(f"{k} = ?" for k in fields)
        await self.db.write(f"UPDATE agent_sessions SET {sets} WHERE id = ?", (*fields.values(), session_id))

    async def end_session(self, session_id: int, status: str, outcome: str, **fields: Any) -> None:
        await self.update_session(session_id, status=status, outcome=outcome, ended_at=now_text(), **fields)

    async def finish_session(self, session_id: int, status: str, outcome: str, ticket_id: int,
                             ticket_status: TicketStatus, actor: str, detail: dict[str, Any],
                             expect: tuple[TicketStatus, ...] = (TicketStatus.investigating,)) -> bool:
        """End a session and move its ticket in ONE transaction: a process killed in between must
        never leave a ticket `investigating` with no session left to finish it."""
        async with self.db.transaction() as conn:
            await conn.execute("UPDATE agent_sessions SET status = ?, outcome = ?, ended_at = ? WHERE id = ?",
                               (status, outcome, now_text(), session_id))
            return await move_ticket(conn, ticket_id, ticket_status, actor, detail, expect)

    async def get_session(self, session_id: int) -> AgentSession | None:
        row = await self.db.fetchone("SELECT * FROM agent_sessions WHERE id = ?", (session_id,))
        return None if row is None else session_from_row(row)

    async def sessions_for_ticket(self, ticket_id: int) -> list[AgentSession]:
        rows = await self.db.fetchall("SELECT * FROM agent_sessions WHERE ticket_id = ? ORDER BY id", (ticket_id,))
        return [session_from_row(r) for r in rows]

    async def list_sessions(self, run_id: int | None = None, limit: int = 100) -> list[AgentSession]:
        if run_id is None:
            rows = await self.db.fetchall("SELECT * FROM agent_sessions ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = await self.db.fetchall(
                "SELECT * FROM agent_sessions WHERE run_id = ? ORDER BY id DESC LIMIT ?", (run_id, limit)
            )
        return [session_from_row(r) for r in rows]

    async def session_steps(self, session_id: int, after_id: int = 0) -> list[AgentStep]:
        rows = await self.db.fetchall(
            "SELECT * FROM agent_steps WHERE session_id = ? AND id > ? ORDER BY id", (session_id, after_id)
        )
        return [AgentStep.model_validate({**dict(r), "content": loads(r["content"])}) for r in rows]

    async def recent_steps(self, run_id: int, after_id: int = 0, limit: int = 200) -> list[AgentStep]:
        rows = await self.db.fetchall(
            "SELECT s.* FROM agent_steps s JOIN agent_sessions a ON a.id = s.session_id"
            " WHERE a.run_id = ? AND s.id > ? ORDER BY s.id DESC LIMIT ?",
            (run_id, after_id, limit),
        )
        return [AgentStep.model_validate({**dict(r), "content": loads(r["content"])}) for r in reversed(rows)]

    async def orphaned_sessions(self) -> list[AgentSession]:
        """Running sessions whose run has ended: its process stopped or died (see runs.reap_dead_runs)."""
        rows = await self.db.fetchall(
            "SELECT s.* FROM agent_sessions s JOIN runs r ON r.id = s.run_id"
            " WHERE s.status = 'running' AND r.ended_at IS NOT NULL ORDER BY s.id")
        return [session_from_row(r) for r in rows]
