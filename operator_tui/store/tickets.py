"""Tickets (one per invariant and entity while active), their timeline, and metric samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from operator_tui.store.db import Database, dumps, loads
from operator_tui.store.models import TicketEvent
from operator_tui.timeutil import now_text
from subjects.base import Ticket, TicketStatus, Violation

ACTIVE = tuple(s.value for s in TicketStatus.active())


def ticket_from_row(row: Any) -> Ticket:
    data = dict(row)
    data["evidence"] = loads(data["evidence"], {})
    data["resolution"] = loads(data["resolution"])
    data.pop("dedup_key", None)
    data.pop("updated_at", None)
    return Ticket.model_validate(data)


@dataclass
class TickWrite:
    """Everything one monitor tick changes, written in one transaction."""

    run_id: int
    samples: list[tuple[str, str, float]] = field(default_factory=list)  # (entity, metric, value)
    open: list[Violation] = field(default_factory=list)  # grace elapsed: open (or update) a ticket
    seen: list[tuple[int, Violation]] = field(default_factory=list)  # active ticket, still violated
    resolve: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # ticket id, why
    at: str = field(default_factory=now_text)


@dataclass
class TickResult:
    opened: list[Ticket] = field(default_factory=list)
    resolved: list[Ticket] = field(default_factory=list)


async def add_ticket_event(conn: aiosqlite.Connection, ticket_id: int, kind: str, status: str | None,
                           actor: str, detail: dict[str, Any], at: str | None = None) -> None:
    await conn.execute(
        "INSERT INTO ticket_events(ticket_id, at, kind, status, actor, detail) VALUES (?,?,?,?,?,?)",
        (ticket_id, at or now_text(), kind, status, actor, dumps(detail)),
    )


async def _fetch_ticket(conn: aiosqlite.Connection, ticket_id: int) -> Ticket:
    async with conn.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)) as cur:
        return ticket_from_row(await cur.fetchone())


class TicketsRepo:
    db: Database
    sample_limit: int = 200_000  # rows kept per run; older samples are pruned

    async def apply_tick(self, w: TickWrite) -> TickResult:
        result = TickResult()
        async with self.db.transaction() as conn:
            if w.samples:
                await conn.executemany(
                    "INSERT INTO samples(run_id, at, entity, metric, value) VALUES (?,?,?,?,?)",
                    [(w.run_id, w.at, e, m, v) for e, m, v in w.samples],
                )
            for v in w.open:
                async with conn.execute(
                    f"SELECT id FROM tickets WHERE run_id = ? AND dedup_key = ? AND status IN {ACTIVE}",
                    (w.run_id, v.dedup_key),
                ) as cur:
                    row = await cur.fetchone()
                if row is not None:  # already active: this is another occurrence
                    w.seen.append((row["id"], v))
                    continue
                cur = await conn.execute(
                    "INSERT INTO tickets(run_id, invariant, entity, dedup_key, severity, status, summary, evidence,"
                    " opened_at, last_seen_at, occurrences, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,1,?)",
                    (w.run_id, v.invariant, v.entity, v.dedup_key, v.severity.value, TicketStatus.open.value,
                     v.summary, dumps(v.evidence), w.at, w.at, w.at),
                )
                ticket_id = cur.lastrowid
                await add_ticket_event(conn, ticket_id, "opened", "open", "monitor",
                                       {"summary": v.summary, "evidence": v.evidence}, w.at)
                result.opened.append(await _fetch_ticket(conn, ticket_id))
            for ticket_id, v in w.seen:
                await conn.execute(
                    "UPDATE tickets SET occurrences = occurrences + 1, last_seen_at = ?, summary = ?, evidence = ?,"
                    " severity = ?, updated_at = ? WHERE id = ?",
                    (w.at, v.summary, dumps(v.evidence), v.severity.value, w.at, ticket_id),
                )
            for ticket_id, why in w.resolve:
                cur = await conn.execute(
                    f"UPDATE tickets SET status = 'resolved', resolved_at = ?, resolution = ?, updated_at = ?"
                    f" WHERE id = ? AND status IN {ACTIVE}",
                    (w.at, dumps(why), w.at, ticket_id),
                )
                if cur.rowcount:
                    await add_ticket_event(conn, ticket_id, "resolved", "resolved", why.get("by", "monitor"), why, w.at)
                    result.resolved.append(await _fetch_ticket(conn, ticket_id))
        return result

    async def adopt_orphan_tickets(self, run_id: int, subject: str, cluster: str | None,
                                   kinds: tuple[str, ...] = ("headless", "console")) -> list[tuple[int, str]]:
        """Active tickets of runs that died while watching the same cluster move to this run, so
        the restarted operator carries on with them instead of leaving them open forever. A ticket
        this run already has an active twin of is closed as superseded by it. Returns
        (ticket id, "adopted" | "superseded by #N")."""
        out: list[tuple[int, str]] = []
        at = now_text()
        async with self.db.transaction() as conn:
            async with conn.execute(
                f"SELECT t.id, t.dedup_key, t.run_id FROM tickets t JOIN runs r ON r.id = t.run_id"
                f" WHERE t.status IN {ACTIVE} AND r.status = 'died' AND r.subject = ? AND r.cluster IS ?"
                f" AND r.kind IN ({','.join('?' * len(kinds))}) AND t.run_id != ? ORDER BY t.id",
                (subject, cluster, *kinds, run_id),
            ) as cur:
                orphans = list(await cur.fetchall())
            for row in orphans:
                async with conn.execute(
                    f"SELECT id FROM tickets WHERE run_id = ? AND dedup_key = ? AND status IN {ACTIVE}",
                    (run_id, row["dedup_key"]),
                ) as cur:
                    twin = await cur.fetchone()
                if twin is None:
                    await conn.execute("UPDATE tickets SET run_id = ?, updated_at = ? WHERE id = ?",
                                       (run_id, at, row["id"]))
                    await add_ticket_event(conn, row["id"], "adopted", None, "system",
                                           {"from_run": row["run_id"], "to_run": run_id,
                                            "reason": f"run {row['run_id']} died; run {run_id} carries on"}, at)
                    out.append((row["id"], "adopted"))
                else:
                    why = {"by": "system", "reason": f"superseded by ticket #{twin['id']}: run {row['run_id']} died "
                                                     f"and run {run_id} had opened its own",
                           "superseded_by": twin["id"]}
                    await conn.execute("UPDATE tickets SET status = 'resolved', resolved_at = ?, resolution = ?,"
                                       " updated_at = ? WHERE id = ?", (at, dumps(why), at, row["id"]))
                    await add_ticket_event(conn, row["id"], "superseded", "resolved", "system", why, at)
                    await add_ticket_event(conn, twin["id"], "continues", None, "system",
                                           {"ticket": row["id"], "from_run": row["run_id"]}, at)
                    out.append((row["id"], f"superseded by #{twin['id']}"))
        return out

    async def prune_samples(self, run_id: int) -> int:
        async with self.db.transaction() as conn:
            async with conn.execute("SELECT max(id) FROM samples WHERE run_id = ?", (run_id,)) as cur:
                newest = (await cur.fetchone())[0]
            if newest is None:
                return 0
            cur = await conn.execute(
                "DELETE FROM samples WHERE run_id = ? AND id <= ?", (run_id, newest - self.sample_limit)
            )
            return cur.rowcount

    async def samples(self, run_id: int, entity: str, metric: str, limit: int = 300) -> list[tuple[str, float]]:
        rows = await self.db.fetchall(
            "SELECT at, value FROM samples WHERE run_id = ? AND entity = ? AND metric = ? ORDER BY id DESC LIMIT ?",
            (run_id, entity, metric, limit),
        )
        return [(r["at"], r["value"]) for r in reversed(rows)]

    async def series(self, run_id: int, limit: int = 5000) -> list[tuple[str, str]]:
        """Which (entity, metric) series a run has samples for."""
        rows = await self.db.fetchall(
            "SELECT DISTINCT entity, metric FROM samples WHERE run_id = ? LIMIT ?", (run_id, limit)
        )
        return [(r["entity"], r["metric"]) for r in rows]

    async def get_ticket(self, ticket_id: int) -> Ticket | None:
        row = await self.db.fetchone("SELECT * FROM tickets WHERE id = ?", (ticket_id,))
        return None if row is None else ticket_from_row(row)

    async def list_tickets(self, run_id: int | None = None, statuses: list[str] | None = None,
                           limit: int = 1000) -> list[Ticket]:
        sql, params = "SELECT * FROM tickets WHERE 1=1", []
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        if statuses:
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            params.extend(statuses)
        rows = await self.db.fetchall(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [ticket_from_row(r) for r in rows]

    async def active_tickets(self, run_id: int) -> list[Ticket]:
        return await self.list_tickets(run_id=run_id, statuses=list(ACTIVE))

    async def ticket_events(self, ticket_id: int) -> list[TicketEvent]:
        rows = await self.db.fetchall("SELECT * FROM ticket_events WHERE ticket_id = ? ORDER BY id", (ticket_id,))
        return [TicketEvent.model_validate({**dict(r), "detail": loads(r["detail"], {})}) for r in rows]

    async def add_ticket_event(self, ticket_id: int, kind: str, actor: str, detail: dict[str, Any],
                               status: str | None = None) -> None:
        async with self.db.transaction() as conn:
            await add_ticket_event(conn, ticket_id, kind, status, actor, detail)

    async def set_ticket_status(self, ticket_id: int, status: TicketStatus, actor: str, detail: dict[str, Any],
                                expect: tuple[TicketStatus, ...] | None = None) -> bool:
        """Move a ticket to `status` (only from `expect`, if given). Resolving records the detail."""
        async with self.db.transaction() as conn:
            return await move_ticket(conn, ticket_id, status, actor, detail, expect)

    async def investigating_without_session(self) -> list[Ticket]:
        """Tickets marked investigating that no running session holds (left so by a process that
        died between the two writes of older versions, or by hand): nobody will ever finish them."""
        rows = await self.db.fetchall(
            "SELECT t.* FROM tickets t WHERE t.status = 'investigating' AND NOT EXISTS ("
            "SELECT 1 FROM agent_sessions s WHERE s.ticket_id = t.id AND s.status = 'running')")
        return [ticket_from_row(r) for r in rows]


async def move_ticket(conn: aiosqlite.Connection, ticket_id: int, status: TicketStatus, actor: str,
                      detail: dict[str, Any], expect: tuple[TicketStatus, ...] | None = None) -> bool:
    """The status change of `set_ticket_status`, inside the caller's transaction."""
    at = now_text()
    sql = "UPDATE tickets SET status = ?, updated_at = ?"
    params: list[Any] = [status.value, at]
    if status == TicketStatus.resolved:
        sql += ", resolved_at = ?, resolution = ?"
        params += [at, dumps(detail)]
    sql += " WHERE id = ?"
    params.append(ticket_id)
    allowed = tuple(s.value for s in (expect or TicketStatus.active()))
    sql += f" AND status IN ({','.join('?' * len(allowed))})"
    params.extend(allowed)
    cur = await conn.execute(sql, params)
    if not cur.rowcount:
        return False
    await add_ticket_event(conn, ticket_id, status.value, status.value, actor, detail, at)
    return True
