"""Campaign files (`scenarios/campaigns/*.yaml`): the pydantic models and how they are loaded.

A campaign is seeds x repeats trials of every (scenario, variant) pair it names, plus the
thresholds that make its verdict. `load_campaign(path)` returns a `Campaign` (the validated spec,
its verbatim text, the hashes that identify it) or raises `SpecError` naming the file, the line
and the field. Checks that need the subjects' adapters (fault kinds, lab options) live in
`eval/campaign_plan.py`, beside the other checks made before anything starts.

Design reference §5. Departures, each for a reason:
- Every fault of a scenario is injected at the same moment: the end of the pre-window plus a
  jitter drawn from the trial seed (`inject_jitter_s`), the same for every variant of a pair. A
  fault with `duration_s` ends by itself (the subject's own timer: kinds that take `duration_s`).
- The oracle's knobs (check interval, clean checks, hold) sit under `oracle:` in `defaults` and
  in a scenario; the checks themselves are the subject adapter's, the same for every variant.
- A scenario may list the `variants` it runs (default: all): the CI profile runs baselines only
  where the fault heals by itself.
- `memory` accepts only `none` (no snapshot mechanism exists yet to freeze one).
- `schedule: co_schedule_pairs` deals the variants of a pair one after another in spec order, so
  with as many slots as variants they usually run side by side; nothing holds a slot idle to
  guarantee it. `blocked_random` (the default) shuffles each pair's order with a seeded RNG.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from eval.yaml_source import Source, SpecError, from_validation_error
from eval.yaml_source import load as load_yaml

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
Seconds = Annotated[float, Field(ge=0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- timing ----------------------------------------------------------------------------------------


class Timeouts(Strict):
    """Deadlines of the trial's phases, in seconds (reference §2; the runner's `Timings`).
    `start` bounds the operator's start and, again, the workload's."""

    lab_reset: float = Field(60, gt=0)
    healthy: float = Field(60, gt=0)
    start: float = Field(30, gt=0)
    inject: float = Field(10, gt=0)
    effect: float = Field(10, gt=0)
    quiesce: float = Field(10, gt=0)
    revert_per_fault: float = Field(15, gt=0)
    capture: float = Field(30, gt=0)


class TimeoutsOverride(Strict):
    lab_reset: float | None = Field(None, gt=0)
    healthy: float | None = Field(None, gt=0)
    start: float | None = Field(None, gt=0)
    inject: float | None = Field(None, gt=0)
    effect: float | None = Field(None, gt=0)
    quiesce: float | None = Field(None, gt=0)
    revert_per_fault: float | None = Field(None, gt=0)
    capture: float | None = Field(None, gt=0)


class Oracle(Strict):
    """How the end condition is judged: clean for `clean_checks` checks in a row, SLO recovered,
    and still clean after `hold_s`."""

    check_interval_s: float = Field(1.0, gt=0)
    clean_checks: int = Field(5, ge=1)
    hold_s: Seconds = 20


class OracleOverride(Strict):
    check_interval_s: float | None = Field(None, gt=0)
    clean_checks: int | None = Field(None, ge=1)
    hold_s: Seconds | None = None


def _jitter(v: Any) -> Any:
    if isinstance(v, int | float):
        return (v, v)
    return v


class Defaults(Strict):
    timeouts: Timeouts = Timeouts()
    pre_window_s: Seconds = 15
    inject_jitter_s: tuple[Seconds, Seconds] = (0, 5)
    observe_budget_s: float = Field(180, gt=0)
    oracle: Oracle = Oracle()

    _jitter = field_validator("inject_jitter_s", mode="before")(_jitter)

    @model_validator(mode="after")
    def _order(self) -> Defaults:
        if self.inject_jitter_s[0] > self.inject_jitter_s[1]:
            raise ValueError("inject_jitter_s: the lower bound is above the upper one")
        return self


@dataclass(frozen=True)
class Timing:
    """The effective timing of one scenario (defaults with its overrides)."""

    timeouts: Timeouts
    pre_window_s: float
    inject_jitter_s: tuple[float, float]
    observe_budget_s: float
    oracle: Oracle

    def worst_case_s(self, faults: int, infra_retries: int) -> float:
        """The longest a trial can take: every phase to its deadline, as the runner sets them
        (eval/trial.py), and the phases before injection once more per infrastructure retry. The
        observe phase ends at its budget even when a hold is under way."""
        t = self.timeouts
        before = t.lab_reset + t.healthy + 2 * t.start  # operator start, then workload start
        pre = self.pre_window_s + self.inject_jitter_s[1] + 3 * self.oracle.check_interval_s + 10
        inject = t.inject + t.effect * max(1, faults)
        revert = t.revert_per_fault * faults + 5 if faults else 0
        return (1 + infra_retries) * before + pre + inject + self.observe_budget_s + t.quiesce + revert + t.capture


# -- variants --------------------------------------------------------------------------------------


class Policy(Strict):
    mode: Literal["observe", "propose", "execute"] = "execute"
    approval: Literal["off", "risky", "all"] = "off"


class Approver(Strict):
    """The harness's stand-in for a human approving actions, seeded per trial: each request is
    approved with probability `approve_fraction` (else rejected) after a delay drawn from
    `delay_s`; `expire` leaves every request to expire."""

    decision: Literal["approve", "reject", "expire", "mixed"] = "approve"
    approve_fraction: float | None = Field(None, ge=0, le=1)
    delay_s: tuple[Seconds, Seconds] = (0, 0)

    _delay = field_validator("delay_s", mode="before")(_jitter)

    @model_validator(mode="after")
    def _check(self) -> Approver:
        if (self.decision == "mixed") != (self.approve_fraction is not None):
            raise ValueError("approve_fraction goes with decision: mixed, and only with it")
        if self.delay_s[0] > self.delay_s[1]:
            raise ValueError("delay_s: the lower bound is above the upper one")
        return self


class AgentBudgets(Strict):
    turns: int | None = Field(None, ge=1)
    tokens: int | None = Field(None, ge=1000)
    wall_s: float | None = Field(None, gt=0)


class Variant(Strict):
    """baseline: the monitor on in observe mode, no agent. agent: a diagnoser under a policy."""

    name: Name
    kind: Literal["baseline", "agent"]
    description: str = ""
    diagnoser: Literal["embedded", "claude"] | None = None
    model: str | None = None
    system_prompt: str | None = None  # a file, relative to the campaign file; its content is hashed
    tools: list[str] | None = None
    budgets: AgentBudgets | None = None
    policy: Policy | None = None
    approver: Approver | None = None
    memory: Literal["none"] = "none"

    @model_validator(mode="after")
    def _check(self) -> Variant:
        claude_only = {"model": self.model, "system_prompt": self.system_prompt, "tools": self.tools,
                       "budgets": self.budgets}
        if self.kind == "baseline":
            for key, value in {**claude_only, "diagnoser": self.diagnoser, "approver": self.approver}.items():
                if value is not None:
                    raise ValueError(f"a baseline runs no agent: remove {key}")
            if self.policy is not None and self.policy.mode != "observe":
                raise ValueError("a baseline runs in observe mode (policy.mode: observe, or no policy)")
            return self
        if self.diagnoser is None:
            raise ValueError("an agent variant needs a diagnoser: embedded or claude")
        if self.diagnoser == "embedded":
            for key, value in claude_only.items():
                if value is not None:
                    raise ValueError(f"{key} is for the claude diagnoser, not embedded")
        elif self.model is None:
            raise ValueError("a claude variant names its model")
        approval = self.effective_policy.approval
        if approval != "off" and self.approver is None:
            raise ValueError(f"policy.approval {approval!r} needs an approver (nobody else will answer in a "
                             "headless campaign)")
        if approval == "off" and self.approver is not None:
            raise ValueError("an approver is given but policy.approval is off")
        return self

    @property
    def effective_policy(self) -> Policy:
        if self.kind == "baseline":
            return Policy(mode="observe", approval="off")
        return self.policy or Policy()


# -- scenarios -------------------------------------------------------------------------------------


class FaultSpec(Strict):
    kind: str
    target: str | None = None  # None: the adapter picks one with the trial's seeded rng
    params: dict[str, Any] = {}
    duration_s: float | None = Field(None, gt=0)  # ends by itself after this long (kinds that can)

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v


class Slo(Strict):
    success: float = Field(0.99, gt=0, le=1)
    p99_ms: float = Field(200, gt=0)


class Workload(Strict):
    rate_per_s: float | None = Field(None, gt=0, le=5_000)
    slo: Slo | None = None
    params: dict[str, Any] = {}


class Expect(Strict):
    detect_invariants: list[str] = []


class Scenario(Strict):
    name: Name
    subject: str
    description: str = ""
    lab: dict[str, Any] = {}
    workload: Workload = Workload()
    faults: list[FaultSpec] = []
    expect: Expect = Expect()
    variants: list[Name] | None = None  # default: every variant of the campaign
    seeds: int | None = Field(None, ge=1, le=1000)  # default: the campaign's
    pre_window_s: Seconds | None = None
    inject_jitter_s: tuple[Seconds, Seconds] | None = None
    observe_budget_s: float | None = Field(None, gt=0)
    timeouts: TimeoutsOverride = TimeoutsOverride()
    oracle: OracleOverride = OracleOverride()

    _jitter = field_validator("inject_jitter_s", mode="before")(_jitter)

    @property
    def control(self) -> bool:
        """A no-fault control: it measures false tickets and unnecessary actions."""
        return not self.faults

    def timing(self, defaults: Defaults) -> Timing:
        def merged(base: BaseModel, override: BaseModel) -> Any:
            changes = {k: v for k, v in override.model_dump().items() if v is not None}
            return base.model_copy(update=changes)

        return Timing(
            timeouts=merged(defaults.timeouts, self.timeouts),
            pre_window_s=defaults.pre_window_s if self.pre_window_s is None else self.pre_window_s,
            inject_jitter_s=self.inject_jitter_s or defaults.inject_jitter_s,
            observe_budget_s=self.observe_budget_s or defaults.observe_budget_s,
            oracle=merged(defaults.oracle, self.oracle),
        )


# -- thresholds ------------------------------------------------------------------------------------

RATE_METRICS = ("success_rate", "detection_rate")
TIME_METRICS = ("ttm_rmst", "ttm_median", "ttd_median")
COUNT_METRICS = ("harmful_trials", "leaked_faults", "false_tickets", "unnecessary_actions",
                 "unapproved_destructive", "destructive_executed", "collateral")
FRACTION_METRICS = ("invalid_fraction",)
METRICS = RATE_METRICS + TIME_METRICS + COUNT_METRICS + FRACTION_METRICS
COMPARE_METRICS = ("success_rate", "ttm_rmst")


class Threshold(Strict):
    """One rule of the verdict. Either a bound on a metric:
        {variant: embedded, metric: success_rate, scope: each_scenario, min: 0.9, use: ci_lower}
    or a paired comparison of two variants:
        {compare: [embedded, baseline], metric: ttm_rmst, expect: a_not_worse, margin: 5}
    """

    name: str | None = None
    metric: Literal[METRICS]  # type: ignore[valid-type]
    variant: Name | None = None  # None: every agent variant (rates, times); every trial (counts)
    scenario: Name | None = None  # None: every scenario the metric applies to
    scope: Literal["all", "each_scenario"] = "all"
    min: float | None = None
    max: float | None = None
    use: Literal["point", "ci_lower", "ci_upper"] = "point"
    compare: tuple[Name, Name] | None = None
    expect: Literal["a_better", "a_not_worse"] | None = None
    margin: float = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Threshold:
        if self.compare is not None:
            if self.metric not in COMPARE_METRICS:
                raise ValueError(f"a comparison is on one of: {', '.join(COMPARE_METRICS)}")
            if self.expect is None:
                raise ValueError("a comparison says what it expects: a_better or a_not_worse")
            if self.min is not None or self.max is not None or self.variant is not None:
                raise ValueError("a comparison takes no min, max or variant")
            if self.compare[0] == self.compare[1]:
                raise ValueError("a comparison needs two different variants")
            return self
        if self.expect is not None or self.margin:
            raise ValueError("expect and margin go with compare: [A, B]")
        if (self.min is None) == (self.max is None):
            raise ValueError("give exactly one of min or max")
        if self.use != "point" and self.metric not in (*RATE_METRICS, "ttm_rmst"):
            raise ValueError(f"use: {self.use} needs a metric with an interval (rates, ttm_rmst)")
        return self

    @property
    def bound(self) -> str:
        """What the observed value must be, e.g. "<= 10" ("" for a comparison)."""
        if self.compare is not None:
            return ""
        return f">= {self.min:g}" if self.min is not None else f"<= {self.max:g}"

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        where = f"{self.scenario or ('each scenario' if self.scope == 'each_scenario' else 'all scenarios')}"
        if self.compare is not None:
            a, b = self.compare
            margin = f", margin {self.margin:g}" if self.margin else ""
            return f"{self.metric}: {a} {self.expect} {b} ({where}{margin})"
        bound = self.bound
        of = f"({self.variant}, {where})" if self.variant else f"({where})"
        use = "" if self.use == "point" else f" [{self.use}]"
        return f"{self.metric}{of} {bound}{use}"


# -- the campaign ----------------------------------------------------------------------------------


class Budget(Strict):
    campaign_wall_s: float = Field(3600, gt=0)
    max_invalid_fraction: float = Field(0.25, ge=0, le=1)  # above it the campaign is incomplete


class StatsConfig(Strict):
    bootstrap_resamples: int = Field(5_000, ge=100, le=200_000)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    min_pairs: int = Field(6, ge=2)


class JunitConfig(Strict):
    # baseline timeouts are expected, not failures
    trial_failures: Literal["agent_variants", "all", "none"] = "agent_variants"


class CampaignSpec(Strict):
    version: Literal[1]
    name: Name
    description: str = ""
    seed: int
    seeds: int = Field(ge=1, le=1000)
    repeats: int = Field(1, ge=1, le=100)
    parallel: int = Field(2, ge=1, le=64)
    schedule: Literal["blocked_random", "co_schedule_pairs"] = "blocked_random"
    infra_retries: int = Field(1, ge=0, le=5)
    budget: Budget = Budget()
    defaults: Defaults = Defaults()
    stats: StatsConfig = StatsConfig()
    variants: list[Variant] = Field(min_length=1)
    scenarios: list[Scenario] = Field(min_length=1)
    thresholds: list[Threshold] = []
    junit: JunitConfig = JunitConfig()

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)

    def scenario(self, name: str) -> Scenario:
        return next(s for s in self.scenarios if s.name == name)

    def seeds_of(self, scenario: Scenario) -> int:
        return scenario.seeds or self.seeds

    def pairs_of(self, scenario: Scenario) -> int:
        """Trials per (scenario, variant) cell: the pairs a comparison on it can have."""
        return self.seeds_of(scenario) * self.repeats

    def variants_of(self, scenario: Scenario) -> list[Variant]:
        names = scenario.variants
        return [v for v in self.variants if names is None or v.name in names]


@dataclass(frozen=True)
class Campaign:
    """A loaded campaign: the spec, where it came from, and the hashes that identify it."""

    spec: CampaignSpec
    source: Source
    path: Path
    prompts: dict[str, dict[str, str]]  # variant -> {"path", "sha256"} of its system prompt file
    spec_sha256: str

    @property
    def text(self) -> str:
        return self.source.text

    def variant_config(self, name: str) -> dict[str, Any]:
        """The variant as stored and hashed: its effective policy, the prompt's hash (not its path
        alone), so that editing the prompt makes a different variant."""
        v = self.spec.variant(name)
        config = v.model_dump(mode="json", exclude={"description"})
        config["policy"] = v.effective_policy.model_dump(mode="json")
        if name in self.prompts:
            config["system_prompt"] = dict(self.prompts[name])
        return config

    def variant_sha256(self, name: str) -> str:
        config = dict(self.variant_config(name))
        if isinstance(config.get("system_prompt"), dict):
            config["system_prompt"] = {"sha256": config["system_prompt"]["sha256"]}
        return sha256_json(config)

    def scenario_sha256(self, name: str) -> str:
        s = self.spec.scenario(name)
        return sha256_json({"scenario": s.model_dump(mode="json"),
                            "timing": _timing_json(s.timing(self.spec.defaults))})

    def prompt_text(self, name: str) -> str | None:
        if name not in self.prompts:
            return None
        return (self.path.parent / self.prompts[name]["path"]).read_text(encoding="utf-8")


def _timing_json(t: Timing) -> dict[str, Any]:
    return {"timeouts": t.timeouts.model_dump(), "pre_window_s": t.pre_window_s,
            "inject_jitter_s": list(t.inject_jitter_s), "observe_budget_s": t.observe_budget_s,
            "oracle": t.oracle.model_dump()}


def sha256_json(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _cross_check(spec: CampaignSpec, src: Source) -> None:
    """References between parts of the file: names unique, thresholds and scenarios naming
    variants and scenarios that exist."""
    for kind, items in (("variants", spec.variants), ("scenarios", spec.scenarios)):
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.name in seen:
                raise src.error((kind, i, "name"), f"duplicate name {item.name!r}")
            seen.add(item.name)
    variants = {v.name for v in spec.variants}
    scenarios = {s.name for s in spec.scenarios}
    for i, s in enumerate(spec.scenarios):
        for j, name in enumerate(s.variants or []):
            if name not in variants:
                raise src.error(("scenarios", i, "variants", j), f"unknown variant {name!r}; known: "
                                f"{', '.join(sorted(variants))}")
        if s.variants is not None and not s.variants:
            raise src.error(("scenarios", i, "variants"), "an empty list runs nothing; leave it out for all")
    for i, t in enumerate(spec.thresholds):
        for j, name in enumerate(t.compare or ()):
            if name not in variants:
                raise src.error(("thresholds", i, "compare", j), f"unknown variant {name!r}; known: "
                                f"{', '.join(sorted(variants))}")
        if t.variant is not None and t.variant not in variants:
            raise src.error(("thresholds", i, "variant"), f"unknown variant {t.variant!r}; known: "
                            f"{', '.join(sorted(variants))}")
        if t.scenario is not None and t.scenario not in scenarios:
            raise src.error(("thresholds", i, "scenario"), f"unknown scenario {t.scenario!r}; known: "
                            f"{', '.join(sorted(scenarios))}")
    labels: set[str] = set()
    for i, t in enumerate(spec.thresholds):
        if t.label in labels:
            raise src.error(("thresholds", i), f"two thresholds named {t.label!r}; give one a name")
        labels.add(t.label)


def _prompts(spec: CampaignSpec, src: Source, base: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for i, v in enumerate(spec.variants):
        if v.system_prompt is None:
            continue
        path = base / v.system_prompt
        try:
            data = path.read_bytes()
            data.decode("utf-8")
        except FileNotFoundError:
            raise src.error(("variants", i, "system_prompt"), f"no such file: {path}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise src.error(("variants", i, "system_prompt"), f"cannot read {path}: {e}") from None
        if not data.strip():
            raise src.error(("variants", i, "system_prompt"), f"{path} is empty")
        out[v.name] = {"path": v.system_prompt, "sha256": hashlib.sha256(data).hexdigest()}
    return out


def parse_campaign(source: Source, path: Path) -> Campaign:
    if not isinstance(source.data, dict):
        raise source.error((), "a campaign file is a mapping (version, name, seed, variants, scenarios, ...)")
    try:
        spec = CampaignSpec.model_validate(source.data)
    except ValidationError as e:
        raise from_validation_error(source, e) from None
    _cross_check(spec, source)
    prompts = _prompts(spec, source, path.parent)
    digest = sha256_json({"spec": spec.model_dump(mode="json"),
                          "prompts": {k: v["sha256"] for k, v in sorted(prompts.items())}})
    return Campaign(spec, source, path, prompts, digest)


def load_campaign(path: Path | str) -> Campaign:
    """Read and validate a campaign file; SpecError (one line: file, line, field) when it is wrong."""
    p = Path(path)
    return parse_campaign(load_yaml(p), p)


__all__ = ["Campaign", "CampaignSpec", "Scenario", "SpecError", "Threshold", "Variant", "load_campaign"]
