"""The planner: every trial of a campaign, in order, and the refusals made before anything starts.

A campaign is refused (SpecError, exit code 2) when
- a scenario names a subject without an evaluation adapter, a fault kind, fault parameter or lab
  option its adapter does not know;
- its worst case (every trial to every deadline, run `parallel` at a time in the planned order)
  exceeds `budget.campaign_wall_s` (saying by how much), unless the caller allows it;
- a threshold can never pass with the planned number of trials, e.g. a Wilson lower bound of 0.9
  with 10 trials per cell (even 10/10 gives 0.72), or a comparison with fewer pairs than the
  decision rule needs.

Order: pair blocks (scenario, seed index, repeat) go seed index first, so a campaign cut short by
its budget still covers every scenario; within a block the variants run in a seeded random order
(`blocked_random`), so neither variant always runs first on a warm host. Seeds:
`seed = H(root, scenario, seed_index)`, the same for every variant and repeat of a pair.
Sharding (`--shard K/N`) deals whole pair blocks, each to the shard with the least worst-case
time so far, so a shard holds complete pairs and the shards take about as long.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eval import stats
from eval.campaign_results import Keys
from eval.campaign_spec import RATE_METRICS, TIME_METRICS, Campaign, Scenario, SpecError, Threshold
from eval.spec import derive_seed


@dataclass(frozen=True)
class PlannedTrial(Keys):
    index: int  # position in the campaign's order (0-based)
    scenario: str
    variant: str
    seed_index: int
    repeat: int
    seed: int
    worst_case_s: float
    shard: int  # 1-based shard this trial belongs to (1 when unsharded)



@dataclass
class Plan:
    campaign: Campaign
    trials: list[PlannedTrial]  # every trial of the campaign (all shards)
    parallel: int
    shard: tuple[int, int] = (1, 1)
    worst_case_wall_s: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def mine(self) -> list[PlannedTrial]:
        """The trials this shard runs."""
        return [t for t in self.trials if t.shard == self.shard[0]]

    def summary(self) -> str:
        spec = self.campaign.spec
        k, n = self.shard
        shard = f", shard {k}/{n}: {len(self.mine)} trials" if n > 1 else ""
        return (f"campaign {spec.name}: {len(spec.scenarios)} scenarios x {len(spec.variants)} variants, "
                f"{spec.seeds} seeds x {spec.repeats} repeats: {len(self.trials)} trials{shard}; "
                f"parallel {self.parallel}; worst case {_duration(self.worst_case_wall_s)} "
                f"(budget {_duration(spec.budget.campaign_wall_s)})")


def _duration(s: float) -> str:
    s = round(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def parse_shard(text: str) -> tuple[int, int]:
    """'2/4' -> (2, 4); ValueError with a one-line reason otherwise."""
    k, sep, n = text.partition("/")
    if not sep or not k.strip().isdigit() or not n.strip().isdigit():
        raise ValueError(f"--shard takes K/N (e.g. 1/2), got {text!r}")
    ki, ni = int(k), int(n)
    if not 1 <= ki <= ni:
        raise ValueError(f"--shard {text}: K must be between 1 and N")
    return ki, ni


def makespan(durations: list[float], parallel: int) -> float:
    """Wall time of running `durations` in order on `parallel` slots, each taking the next trial
    as soon as it is free."""
    slots = [0.0] * max(1, parallel)
    for d in durations:
        heapq.heappush(slots, heapq.heappop(slots) + d)
    return max(slots)


def trials_of(campaign: Campaign, shards: int = 1) -> list[PlannedTrial]:
    spec = campaign.spec
    out: list[PlannedTrial] = []
    load = [0.0] * shards  # worst-case seconds dealt to each shard so far
    for seed_index in range(max(spec.seeds_of(s) for s in spec.scenarios)):
        for repeat in range(spec.repeats):
            for scenario in spec.scenarios:
                if seed_index >= spec.seeds_of(scenario):
                    continue
                variants = [v.name for v in spec.variants_of(scenario)]
                pair_key = f"{scenario.name}|{seed_index}|{repeat}"
                if spec.schedule == "blocked_random":
                    random.Random(derive_seed(spec.seed, "order", pair_key)).shuffle(variants)
                seed = derive_seed(spec.seed, scenario.name, seed_index)
                worst = scenario.timing(spec.defaults).worst_case_s(len(scenario.faults), spec.infra_retries)
                shard = min(range(shards), key=lambda k: (load[k], k))
                load[shard] += worst * len(variants)
                for v in variants:
                    out.append(PlannedTrial(len(out), scenario.name, v, seed_index, repeat, seed, worst, shard + 1))
    return out


# -- checks against the subjects' adapters ---------------------------------------------------------


def _adapter(subject: str) -> Any:
    from subjects import registry
    from subjects.plugin import PluginError, load

    try:
        plugin = registry.plugin(subject)
    except PluginError as e:
        raise ValueError(str(e)) from None
    if plugin.evaluation is None:
        raise ValueError(f"subject {subject!r} has no evaluation adapter yet")
    return load(plugin.evaluation)


def check_subjects(campaign: Campaign, adapter_of: Callable[[str], Any] = _adapter) -> None:
    src = campaign.source
    for i, s in enumerate(campaign.spec.scenarios):
        try:
            adapter = adapter_of(s.subject)
        except ValueError as e:
            raise src.error(("scenarios", i, "subject"), str(e)) from None
        known_lab = adapter.lab_defaults()
        for key in s.lab:
            if known_lab and key not in known_lab:
                raise src.error(("scenarios", i, "lab", key), f"unknown lab option for {s.subject}; known: "
                                f"{', '.join(sorted(known_lab))}")
        kinds = adapter.fault_kinds()
        for j, f in enumerate(s.faults):
            if f.kind not in kinds:
                raise src.error(("scenarios", i, "faults", j, "kind"), f"unknown fault kind {f.kind!r} for "
                                f"{s.subject}; known: {', '.join(sorted(kinds))}")
            known = kinds[f.kind].params
            if f.duration_s is not None and "duration_s" not in known:
                raise src.error(("scenarios", i, "faults", j, "duration_s"),
                                f"{f.kind} cannot end by itself on {s.subject} (its kind takes no duration_s)")
            for p in f.params:
                if p not in known:
                    raise src.error(("scenarios", i, "faults", j, "params", p),
                                    f"unknown parameter for {f.kind}; known: {', '.join(sorted(known)) or 'none'}")


def self_healing(campaign: Campaign, scenario: Scenario, adapter_of: Callable[[str], Any] = _adapter) -> bool:
    kinds = adapter_of(scenario.subject).fault_kinds()
    return all(kinds[f.kind].self_heals or f.duration_s is not None or f.params.get("duration_s")
               for f in scenario.faults)


# -- thresholds that can never pass -------------------------------------------------------------


def _cells(campaign: Campaign, t: Threshold) -> list[tuple[str, str]]:
    """(scenario, variant) cells a rate or time threshold is judged on."""
    spec = campaign.spec
    out = []
    for s in spec.scenarios:
        if t.scenario is not None and s.name != t.scenario:
            continue
        if s.control:
            continue  # no fault: nothing to mitigate or detect
        for v in spec.variants_of(s):
            if (t.variant is None and v.kind == "agent") or v.name == t.variant:
                out.append((s.name, v.name))
    return out


def _pairs(campaign: Campaign, t: Threshold) -> dict[str, int]:
    spec = campaign.spec
    assert t.compare is not None
    a, b = t.compare
    return {s.name: spec.pairs_of(s) for s in spec.scenarios
            if (t.scenario is None or s.name == t.scenario) and not s.control
            and {a, b} <= {v.name for v in spec.variants_of(s)}}


def check_thresholds(campaign: Campaign) -> None:
    spec = campaign.spec
    src = campaign.source
    conf = spec.stats.confidence
    for i, t in enumerate(spec.thresholds):
        here = ("thresholds", i)
        if t.compare is not None:
            pairs = _pairs(campaign, t)
            if not pairs:
                raise src.error(here, f"{t.label}: no scenario with a fault runs both {t.compare[0]} and "
                                f"{t.compare[1]}")
            n = min(pairs.values()) if t.scope == "each_scenario" else sum(pairs.values())
            if n < spec.stats.min_pairs:
                raise src.error(here, f"{t.label}: can never pass: {n} pairs planned per "
                                f"{'scenario' if t.scope == 'each_scenario' else 'campaign'}, the decision rule "
                                f"needs at least {spec.stats.min_pairs} (raise seeds or repeats)")
            continue
        if t.metric in RATE_METRICS or t.metric in TIME_METRICS:
            cells = _cells(campaign, t)
            if not cells:
                raise src.error(here, f"{t.label}: applies to no trial (no variant of that kind runs a "
                                "scenario with a fault)")
            if t.metric in RATE_METRICS:
                per_cell = {c: spec.pairs_of(spec.scenario(c[0])) for c in cells}
                if t.scope == "each_scenario" or t.scenario:
                    n = min(per_cell.values())
                else:  # pooled per variant: the smallest variant's total
                    totals: dict[str, int] = {}
                    for (_, v), k in per_cell.items():
                        totals[v] = totals.get(v, 0) + k
                    n = min(totals.values())
                _check_rate(src, here, t, n, conf)
        elif t.metric == "invalid_fraction" and ((t.min or 0) > 1 or (t.max if t.max is not None else 0) < 0):
            raise src.error(here, f"{t.label}: a fraction lies between 0 and 1")
        elif t.max is not None and t.max < 0:
            raise src.error(here, f"{t.label}: a count is never below 0")


def _check_rate(src: Any, here: tuple[Any, ...], t: Threshold, n: int, conf: float) -> None:
    if t.use == "point":
        if (t.min is not None and t.min > 1) or (t.max is not None and t.max < 0):
            raise src.error(here, f"{t.label}: a rate lies between 0 and 1")
        return
    if t.use == "ci_lower" and t.min is not None:
        best = stats.wilson(n, n, conf).lo or 0.0
        if best < t.min:
            need = stats.wilson_trials_needed(t.min, conf)
            raise src.error(here, f"{t.label}: can never pass: with {n} trials per cell even {n}/{n} gives a "
                            f"Wilson lower bound of {best:.2f}; {t.min:g} needs at least {need} trials")
    if t.use == "ci_upper" and t.max is not None:
        best = stats.wilson(0, n, conf).hi or 1.0
        if best > t.max:
            raise src.error(here, f"{t.label}: can never pass: with {n} trials per cell even 0/{n} gives a "
                            f"Wilson upper bound of {best:.2f}")


# -- the plan ----------------------------------------------------------------------------------------


def plan_campaign(
    campaign: Campaign,
    *,
    parallel: int | None = None,
    shard: tuple[int, int] = (1, 1),
    allow_over_budget: bool = False,
    adapter_of: Callable[[str], Any] | None = _adapter,
) -> Plan:
    """Every trial, or SpecError naming why the campaign must not start. `adapter_of=None` skips
    the checks against subjects (for reading a stored campaign back)."""
    spec = campaign.spec
    par = parallel if parallel is not None else spec.parallel
    if par < 1:
        raise SpecError(str(campaign.path), None, "parallel", "must be at least 1")
    if adapter_of is not None:
        check_subjects(campaign, adapter_of)
    check_thresholds(campaign)
    trials = trials_of(campaign, shard[1])
    plan = Plan(campaign, trials, par, shard)
    plan.worst_case_wall_s = makespan([t.worst_case_s for t in plan.mine], par)
    budget = spec.budget.campaign_wall_s
    if plan.worst_case_wall_s > budget and not allow_over_budget:
        over = plan.worst_case_wall_s - budget
        raise campaign.source.error(("budget", "campaign_wall_s"), (
            f"the worst case ({len(plan.mine)} trials at parallel {par}) takes {_duration(plan.worst_case_wall_s)}, "
            f"{_duration(over)} over the budget of {_duration(budget)}; raise the budget, run fewer trials or "
            "more in parallel, or pass --allow-over-budget (trials past the budget are skipped)"))
    if adapter_of is not None:
        lasting = [s.name for s in spec.scenarios if not s.control
                   and any(v.kind == "baseline" for v in spec.variants_of(s))
                   and not self_healing(campaign, s, adapter_of)]
        if lasting:
            plan.warnings.append(f"baselines run to the observe budget where the fault does not end by itself "
                                 f"({len(lasting)} scenarios: {', '.join(lasting)})")
    return plan
