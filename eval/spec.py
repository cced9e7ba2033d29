"""What one trial is: `TrialSpec` (scenario, fault, variant, timings, seed, slot), as a campaign
runner builds it per slot and `eval.trial.run_trial` runs it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Timings(Strict):
    """Each phase's own deadline, and the observe window's shape (seconds)."""

    lab_reset: float = Field(60.0, gt=0)
    healthy: float = Field(60.0, gt=0)
    start: float = Field(30.0, gt=0)
    inject: float = Field(10.0, gt=0)
    effect: float = Field(10.0, gt=0)
    quiesce: float = Field(10.0, gt=0)
    revert_per_fault: float = Field(15.0, gt=0)
    capture: float = Field(30.0, gt=0)
    pre_window_s: float = Field(5.0, ge=0)
    observe_budget_s: float = Field(90.0, gt=0)
    check_interval_s: float = Field(1.0, gt=0)
    clean_checks: int = Field(3, ge=1)
    hold_s: float = Field(5.0, ge=0)


class FaultSpec(Strict):
    kind: str
    target: str | None = None  # None: the adapter picks one with the trial's seed
    params: dict[str, Any] = Field(default_factory=dict)


class VariantSpec(Strict):
    """baseline: the monitor on in observe mode, no agent. agent: a diagnoser under a policy."""

    name: str
    kind: Literal["baseline", "agent"]
    diagnoser: Literal["embedded", "claude"] | None = None
    mode: Literal["observe", "propose", "execute"] = "execute"
    approval: Literal["off", "risky", "all"] = "off"
    model: str | None = None
    tools: list[str] | None = None
    budgets: dict[str, float] = Field(default_factory=dict)  # turns, tokens, wall_s
    agent_options: dict[str, Any] = Field(default_factory=dict)  # e.g. {"verify_delay_s": 2}
    memory: Literal["none"] = "none"

    @model_validator(mode="after")
    def _consistent(self) -> VariantSpec:
        if self.kind == "agent" and self.diagnoser is None:
            raise ValueError(f"variant {self.name}: an agent variant needs a diagnoser (embedded or claude)")
        if self.kind == "baseline":
            self.diagnoser = None
            self.mode = "observe"
        return self

    def operator_config(self) -> dict[str, Any]:
        """The variant's part of the operator's config file."""
        if self.kind == "baseline":
            return {"agent": "none"}
        options: dict[str, Any] = {"verify_delay_s": 2.0, **self.agent_options}
        if self.diagnoser == "claude":
            claude = dict(options.get("claude", {}))
            if self.model:
                claude["model"] = self.model
            if self.tools is not None:
                claude["tools"] = list(self.tools)
            for key, name in (("turns", "max_turns"), ("tokens", "max_tokens"), ("wall_s", "max_seconds")):
                if key in self.budgets:
                    claude[name] = int(self.budgets[key]) if key != "wall_s" else float(self.budgets[key])
            options["claude"] = claude
        return {"agent": self.diagnoser, "agent_options": options}


BASELINE = VariantSpec(name="baseline", kind="baseline")
EMBEDDED = VariantSpec(name="embedded", kind="agent", diagnoser="embedded")
CLAUDE = VariantSpec(name="claude", kind="agent", diagnoser="claude", approval="off",
                     budgets={"turns": 12, "tokens": 60000, "wall_s": 120})
VARIANTS = {v.name: v for v in (BASELINE, EMBEDDED, CLAUDE)}


class TrialSpec(Strict):
    """One trial: everything the runner needs, nothing it must look up elsewhere."""

    subject: str
    scenario: str
    faults: list[FaultSpec] = Field(default_factory=list)  # empty: a no-fault control
    variant: VariantSpec
    seed: int = 0
    seed_index: int = 0
    repeat: int = 0
    slot: int = 0
    port_base: int = 24000
    lab: dict[str, Any] = Field(default_factory=dict)
    workload: dict[str, Any] = Field(default_factory=dict)
    timings: Timings = Field(default_factory=Timings)
    operator: dict[str, Any] = Field(default_factory=dict)  # extra core settings for the operator
    artifacts_root: Path


def derive_seed(root_seed: int, *parts: object) -> int:
    """A trial's seed from the campaign's root seed and its place (scenario, index, repeat): the
    same for every variant of a pair, different across pairs."""
    text = "|".join(str(p) for p in (root_seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
