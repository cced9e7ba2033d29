"""Rows of the store as pydantic models: what the CLI prints with --json and the console shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from subjects.base import Ticket, TicketStatus

__all__ = [
    "ActionRecord",
    "ActionTransition",
    "AgentSession",
    "AgentStep",
    "AuditEvent",
    "FaultRow",
    "Run",
    "Ticket",
    "TicketEvent",
    "TicketStatus",
]


class Run(BaseModel):
    id: int
    kind: str
    subject: str
    started_at: datetime
    ended_at: datetime | None = None
    status: str
    pid: int | None = None
    host: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    cluster: str | None = None  # the watched cluster's identity (subjects.base.ClusterIdentity.id)
    proc_start: int | None = None
    pid_ns: str | None = None
    boot_id: str | None = None


class TicketEvent(BaseModel):
    id: int
    ticket_id: int
    at: datetime
    kind: str
    status: str | None = None
    actor: str
    detail: dict[str, Any] = Field(default_factory=dict)


class ActionRecord(BaseModel):
    id: int
    run_id: int | None = None
    ticket_id: int | None = None
    session_id: int | None = None
    workflow_id: str | None = None
    step: int = 0
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    target: str = ""
    risk: str
    idempotent: bool
    state: str
    reason: str = ""
    requested_by: str
    created_at: datetime
    updated_at: datetime
    delay_s: float = 0.0
    not_before: datetime | None = None
    expires_at: datetime | None = None
    cancel_requested: str | None = None
    attempts: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    dry_run: bool = False
    owner_pid: int | None = None
    preview: str = ""
    cluster: str | None = None
    sent_at: datetime | None = None  # a request that may change the system was (possibly) sent
    checkpoint: dict[str, Any] | None = None  # what its reconciliation needs (recorded before sending)


class ActionTransition(BaseModel):
    id: int
    action_id: int
    at: datetime
    from_state: str | None
    to_state: str
    actor: str
    reason: str = ""


class AuditEvent(BaseModel):
    id: int
    at: datetime
    run_id: int | None = None
    actor: str
    kind: str
    ref: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    hash: str
    mac: str | None = None


class AgentSession(BaseModel):
    id: int
    run_id: int
    ticket_id: int
    entity: str
    diagnoser: str
    attempt: int
    status: str
    started_at: datetime
    ended_at: datetime | None = None
    diagnosis: dict[str, Any] | None = None
    verification: dict[str, Any] | None = None
    outcome: str = ""
    input_tokens: int = 0
    output_tokens: int = 0


class AgentStep(BaseModel):
    id: int
    session_id: int
    at: datetime
    kind: str
    title: str = ""
    content: Any = None


class FaultRow(BaseModel):
    id: int
    run_id: int | None = None
    subject: str
    kind: str
    target: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    record: dict[str, Any] = Field(default_factory=dict)
    status: str
    injected_at: datetime
    reverted_at: datetime | None = None
    revert_detail: str | None = None
    actor: str
