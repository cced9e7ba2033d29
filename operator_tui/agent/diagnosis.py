"""The structured Diagnosis every diagnoser (embedded or Claude) must produce."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvidenceItem(Strict):
    signal: str = Field(description="what was looked at, e.g. 'status port probe' or 'slow_score'")
    reading: str = Field(description="what was seen, with values, e.g. 'slow_score=100 (threshold 80)'")
    value: float | str | None = Field(None, description="the reading's value, when it has one")


class Alternative(Strict):
    cause: str = Field(description="a candidate cause that was considered")
    supporting: list[str] = Field(default_factory=list, description="evidence for it")
    contradicting: list[str] = Field(default_factory=list, description="evidence against it")
    verdict: str = Field(description="'chosen', or why it was rejected")
    score: float | None = None


class RecommendedAction(Strict):
    name: str = Field(description="an action from the catalogue")
    params: dict[str, Any] = Field(default_factory=dict, description="complete parameters for the action")
    reason: str = Field("", description="why this action")
    delay_s: float = Field(0.0, ge=0, description="run it this long after the previous step succeeded")


class Diagnosis(Strict):
    summary: str = Field(description="one sentence: what is happening")
    root_cause: str = Field(description="the cause judged most likely, and why")
    evidence: list[EvidenceItem] = Field(default_factory=list)
    alternatives: list[Alternative] = Field(default_factory=list, description="every cause considered")
    recommended_actions: list[RecommendedAction] = Field(
        default_factory=list, description="ordered steps (a workflow); empty when a human must act")
    expected_outcome: str = Field("", description="what should be true after the actions")
    risks: str = Field("", description="what could go wrong")
    confidence: float = Field(ge=0, le=1, description="0..1")
    escalate: bool = Field(False, description="true when no available action can fix this: a human must act")
