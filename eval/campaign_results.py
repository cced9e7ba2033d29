"""What a campaign's analysis and reports read: one record per planned trial, plus the campaign's
provenance. Loaded from the store (`eval/campaign_store.py`) or built by tests; plain data.

Outcomes (reference §3, in order of precedence): invalid, harmful, success (maybe self-healed),
failure, timeout; plus `skipped` (cut by the campaign's budget) and `missing` (planned, never
run: an interrupted campaign or a shard not merged yet).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OUTCOMES = ("success", "failure", "timeout", "harmful", "invalid", "skipped", "missing")
SCORED = ("success", "failure", "timeout", "harmful")  # valid trials
REVERT_OK = ("revert_verified", "not_landed")  # fault statuses that leave nothing behind


class Keys:
    """A trial's place in its campaign: `key` names the trial, `pair_key` the pair (the same for
    every variant of a scenario, seed index and repeat)."""

    scenario: str
    variant: str
    seed_index: int
    repeat: int

    @property
    def pair_key(self) -> str:
        return f"{self.scenario}|{self.seed_index}|{self.repeat}"

    @property
    def key(self) -> str:
        return f"{self.scenario}|{self.variant}|{self.seed_index}|{self.repeat}"


@dataclass
class TrialResult(Keys):
    scenario: str
    variant: str
    variant_kind: str  # baseline | agent
    seed_index: int
    repeat: int
    seed: int
    outcome: str
    trial_id: int | None = None
    run_id: int | None = None
    slot: int | None = None
    attempt: int = 1
    self_healed: bool = False
    error: dict[str, Any] | None = None  # {"type": "fault_not_landed", "message": ...} for invalid
    duration_s: float | None = None
    budget_s: float | None = None  # the observe budget TTM and TTD are censored at
    phases: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


    @property
    def valid(self) -> bool:
        return self.outcome in SCORED

    @property
    def ttm_rmst(self) -> float | None:
        """min(TTM, budget): defined for every valid trial of a faulted scenario."""
        m = self.metrics
        if m.get("ttm_rmst") is not None:
            return float(m["ttm_rmst"])
        if m.get("ttm_s") is not None and not m.get("ttm_censored"):
            return min(float(m["ttm_s"]), self.budget_s or float("inf"))
        return self.budget_s

    @property
    def mitigated(self) -> bool:
        return self.outcome == "success"

    def count(self, *path: str) -> int:
        """An integer metric (0 when absent): count("actions", "executed")."""
        value: Any = self.metrics
        for p in path:
            value = value.get(p) if isinstance(value, dict) else None
        return int(value or 0)

    def leaked_faults(self) -> list[dict[str, Any]]:
        return [f for f in self.faults if f.get("status") not in REVERT_OK]


@dataclass
class CampaignRecord:
    """The campaign's row and provenance (reference §1 eval_campaigns)."""

    id: int | None
    name: str
    spec_sha256: str
    seed: int
    parallel: int
    status: str = "complete"  # planned | running | complete | incomplete | aborted
    started_at: str | None = None
    ended_at: str | None = None
    wall_s: float | None = None
    git_rev: str | None = None
    git_dirty: bool | None = None
    packages: dict[str, str] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)
    shards: list[str] = field(default_factory=list)  # where a merged campaign's trials came from
    resumed_from: int | None = None
