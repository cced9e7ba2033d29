"""Actions and their state history. Every transition is a compare-and-set plus one audit event,
in one transaction, so two processes can never both decide the same action."""

from __future__ import annotations

import os
from typing import Any

from operator_tui.actions.states import ActionState, can_move
from operator_tui.store.audit import append_audit
from operator_tui.store.db import Database, dumps, loads
from operator_tui.store.models import ActionRecord, ActionTransition
from operator_tui.timeutil import now_text

JSON_FIELDS = ("params", "result", "checkpoint")


def action_from_row(row: Any) -> ActionRecord:
    data = dict(row)
    for key in JSON_FIELDS:
        data[key] = loads(data[key], {} if key == "params" else None)
    return ActionRecord.model_validate(data)


class ActionsRepo:
    db: Database

    async def create_action(self, *, name: str, params: dict[str, Any], target: str, risk: str, idempotent: bool,
                            requested_by: str, preview: str = "", run_id: int | None = None,
                            ticket_id: int | None = None, session_id: int | None = None,
                            workflow_id: str | None = None, step: int = 0, delay_s: float = 0.0,
                            not_before: str | None = None,
                            dry_run: bool = False, state: ActionState = ActionState.proposed,
                            reason: str = "", cluster: str | None = None) -> ActionRecord:
        at = now_text()
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "INSERT INTO actions(run_id, ticket_id, session_id, workflow_id, step, name, params, target, risk,"
                " idempotent, state, reason, requested_by, created_at, updated_at, delay_s, not_before, dry_run, preview,"
                " cluster) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, ticket_id, session_id, workflow_id, step, name, dumps(params), target, risk, int(idempotent),
                 state.value, reason, requested_by, at, at, delay_s, not_before, int(dry_run), preview, cluster),
            )
            action_id = cur.lastrowid
            await conn.execute(
                "INSERT INTO action_transitions(action_id, at, from_state, to_state, actor, reason) VALUES (?,?,?,?,?,?)",
                (action_id, at, None, state.value, requested_by, reason),
            )
            await append_audit(
                conn, requested_by, f"action.{state.value}", f"action:{action_id}",
                {"name": name, "params": params, "target": target, "risk": risk, "ticket_id": ticket_id,
                 "workflow_id": workflow_id, "step": step, "delay_s": delay_s, "not_before": not_before,
                 "dry_run": dry_run, "cluster": cluster,
                 "reason": reason},
                run_id,
            )
            async with conn.execute("SELECT * FROM actions WHERE id = ?", (action_id,)) as c:
                return action_from_row(await c.fetchone())

    async def transition_action(self, action_id: int, to: ActionState, actor: str, reason: str = "", *,
                                expect: tuple[ActionState, ...] | None = None,
                                fields: dict[str, Any] | None = None) -> ActionRecord | None:
        """Move an action to `to` if its current state allows it (and is in `expect`, if given).

        Returns the updated record, or None when the action was not in a state that allows the move
        (e.g. another process already approved, rejected or cancelled it).
        """
        fields = dict(fields or {})
        at = now_text()
        async with self.db.transaction() as conn:
            async with conn.execute("SELECT * FROM actions WHERE id = ?", (action_id,)) as cur:
                row = await cur.fetchone()
            if row is None:
                return None
            current = ActionState(row["state"])
            if not can_move(current, to) or (expect is not None and current not in expect):
                return None
            for key in JSON_FIELDS:
                if key in fields:
                    fields[key] = dumps(fields[key])
            if to == ActionState.executing:
                fields.setdefault("owner_pid", os.getpid())
            sets = ", ".join(f"{k} = ?" for k in fields)
            await conn.execute(
                f"UPDATE actions SET state = ?, reason = ?, updated_at = ?{', ' + sets if sets else ''} WHERE id = ?",
                (to.value, reason, at, *fields.values(), action_id),
            )
            await conn.execute(
                "INSERT INTO action_transitions(action_id, at, from_state, to_state, actor, reason) VALUES (?,?,?,?,?,?)",
                (action_id, at, current.value, to.value, actor, reason),
            )
            audit_data: dict[str, Any] = {"name": row["name"], "from": current.value, "to": to.value, "reason": reason}
            for key in ("result", "error", "attempts"):
                if key in fields:
                    audit_data[key] = loads(fields[key]) if key == "result" else fields[key]
            await append_audit(conn, actor, f"action.{to.value}", f"action:{action_id}", audit_data, row["run_id"])
            async with conn.execute("SELECT * FROM actions WHERE id = ?", (action_id,)) as cur:
                return action_from_row(await cur.fetchone())

    async def update_action_fields(self, action_id: int, **fields: Any) -> None:
        """Bookkeeping that is not a state change (attempt counters, progress)."""
        for key in JSON_FIELDS:
            if key in fields:
                fields[key] = dumps(fields[key])
        sets = ", ".join(f"{k} = ?" for k in fields)
        await self.db.write(f"UPDATE actions SET {sets}, updated_at = ? WHERE id = ?",
                            (*fields.values(), now_text(), action_id))

    async def get_action(self, action_id: int) -> ActionRecord | None:
        row = await self.db.fetchone("SELECT * FROM actions WHERE id = ?", (action_id,))
        return None if row is None else action_from_row(row)

    async def list_actions(self, *, states: list[str] | None = None, ticket_id: int | None = None,
                           workflow_id: str | None = None, run_id: int | None = None,
                           limit: int = 500) -> list[ActionRecord]:
        sql, params = "SELECT * FROM actions WHERE 1=1", []
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            params.extend(states)
        if ticket_id is not None:
            sql += " AND ticket_id = ?"
            params.append(ticket_id)
        if workflow_id is not None:
            sql += " AND workflow_id = ?"
            params.append(workflow_id)
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        rows = await self.db.fetchall(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [action_from_row(r) for r in rows]

    async def action_transitions(self, action_id: int) -> list[ActionTransition]:
        rows = await self.db.fetchall(
            "SELECT * FROM action_transitions WHERE action_id = ? ORDER BY id", (action_id,)
        )
        return [ActionTransition.model_validate(dict(r)) for r in rows]

    async def actions_changed_since(self, after_transition_id: int) -> tuple[int, list[int]]:
        """Ids of actions with transitions newer than `after_transition_id` (for cross-process polling)."""
        rows = await self.db.fetchall(
            "SELECT id, action_id FROM action_transitions WHERE id > ? ORDER BY id", (after_transition_id,)
        )
        newest = rows[-1]["id"] if rows else after_transition_id
        return newest, sorted({r["action_id"] for r in rows})

    async def executions_since(self, since_text: str, run_id: int | None = None) -> int:
        """How many actions started executing since then, in any process (the rate limit); only
        those of run `run_id` when given."""
        if run_id is not None:
            return await self.db.scalar(
                "SELECT count(*) FROM action_transitions t JOIN actions a ON a.id = t.action_id "
                "WHERE t.to_state = 'executing' AND t.at >= ? AND a.run_id = ?", (since_text, run_id))
        return await self.db.scalar(
            "SELECT count(*) FROM action_transitions WHERE to_state = 'executing' AND at >= ?", (since_text,)
        )

    async def executing_on(self, target: str, other_than: int, run_id: int | None = None) -> ActionRecord | None:
        if run_id is not None:
            row = await self.db.fetchone("SELECT * FROM actions WHERE state = 'executing' AND target = ? AND id != ? "
                                         "AND run_id = ? LIMIT 1", (target, other_than, run_id))
            return None if row is None else action_from_row(row)
        row = await self.db.fetchone(
            "SELECT * FROM actions WHERE state = 'executing' AND target = ? AND id != ? LIMIT 1", (target, other_than)
        )
        return None if row is None else action_from_row(row)

    async def mark_sent(self, action_id: int, checkpoint: dict[str, Any] | None) -> None:
        """A request that may change the system is about to go out (see ActionContext.sending)."""
        at = now_text()
        async with self.db.transaction() as conn:
            sets, params = "sent_at = coalesce(sent_at, ?), updated_at = ?", [at, at]
            if checkpoint is not None:
                sets += ", checkpoint = ?"
                params.append(dumps(checkpoint))
            await conn.execute(f"UPDATE actions SET {sets} WHERE id = ?", (*params, action_id))
            await append_audit(conn, "system", "action.sending", f"action:{action_id}",
                               {"checkpoint": checkpoint} if checkpoint is not None else {})

    async def actions_of_ended_runs(self, states: list[str]) -> list[ActionRecord]:
        """Actions in these states whose run has ended (cleanly or not) or has no run: nobody drives them."""
        rows = await self.db.fetchall(
            f"SELECT a.* FROM actions a LEFT JOIN runs r ON r.id = a.run_id"
            f" WHERE a.state IN ({','.join('?' * len(states))}) AND (r.id IS NULL OR r.ended_at IS NOT NULL)"
            " ORDER BY a.id", states)
        return [action_from_row(r) for r in rows]

    async def request_cancel(self, action_id: int, actor: str, reason: str) -> bool:
        """Ask the process executing an action to stop it (it polls for this)."""
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE actions SET cancel_requested = ?, updated_at = ? WHERE id = ? AND state = 'executing'",
                (f"{actor}: {reason}", now_text(), action_id),
            )
            if not cur.rowcount:
                return False
            await append_audit(conn, actor, "action.cancel_requested", f"action:{action_id}", {"reason": reason})
        return True
