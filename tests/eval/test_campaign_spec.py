"""Campaign files: validation with file, line and field; hashes; the planner's order and refusals."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from eval.campaign_plan import makespan, parse_shard, plan_campaign
from eval.campaign_spec import SpecError, load_campaign

GOOD = """\
version: 1
name: small
seed: 7
seeds: 3
repeats: 2
parallel: 2
budget: {campaign_wall_s: 100000}
defaults:
  pre_window_s: 5
  observe_budget_s: 60
  oracle: {clean_checks: 3, hold_s: 10}
variants:
  - {name: baseline, kind: baseline}
  - name: embedded
    kind: agent
    diagnoser: embedded
    policy: {mode: execute, approval: "off"}
  - name: claude-v2
    kind: agent
    diagnoser: claude
    model: claude-sonnet-5-5
    system_prompt: prompt.md
    tools: [observe_cluster, submit_diagnosis]
    budgets: {turns: 12, tokens: 60000, wall_s: 120}
    policy: {mode: execute, approval: risky}
    approver: {decision: approve, delay_s: [1, 3]}
scenarios:
  - name: kill
    subject: tikv
    lab: {stores: 5}
    faults:
      - {kind: kill_store, target: 2}
    expect: {detect_invariants: [store_down]}
    observe_budget_s: 90
  - name: control
    subject: tikv
    variants: [embedded]
thresholds:
  - {variant: embedded, metric: success_rate, scope: each_scenario, min: 0.5, use: point}
  - {metric: harmful_trials, max: 0}
  - {compare: [embedded, baseline], metric: ttm_rmst, expect: a_not_worse, margin: 5}
"""


def write(tmp_path: Path, text: str, prompt: str | None = "You are an SRE.\n") -> Path:
    if prompt is not None:
        (tmp_path / "prompt.md").write_text(prompt)
    p = tmp_path / "c.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def error_of(tmp_path: Path, text: str, **kw: object) -> SpecError:
    with pytest.raises(SpecError) as e:
        load_campaign(write(tmp_path, text, **kw))  # type: ignore[arg-type]
    return e.value


def test_a_good_campaign_loads_with_hashes(tmp_path: Path) -> None:
    c = load_campaign(write(tmp_path, GOOD))
    assert [v.name for v in c.spec.variants] == ["baseline", "embedded", "claude-v2"]
    kill = c.spec.scenario("kill")
    timing = kill.timing(c.spec.defaults)
    assert (timing.pre_window_s, timing.observe_budget_s, timing.oracle.clean_checks, timing.oracle.hold_s) == \
        (5, 90, 3, 10)
    assert kill.faults[0].target == "2"  # numbers are target ids, kept as text
    assert c.spec.scenario("control").control
    # the prompt's content is in the variant's config and its hash
    cfg = c.variant_config("claude-v2")
    assert cfg["system_prompt"]["sha256"] == hashlib.sha256(b"You are an SRE.\n").hexdigest()
    assert c.variant_config("baseline")["policy"] == {"mode": "observe", "approval": "off"}
    before = (c.spec_sha256, c.variant_sha256("claude-v2"), c.variant_sha256("embedded"))
    (tmp_path / "prompt.md").write_text("You are a careful SRE.\n")
    c2 = load_campaign(tmp_path / "c.yaml")
    assert c2.spec_sha256 != before[0] and c2.variant_sha256("claude-v2") != before[1]
    assert c2.variant_sha256("embedded") == before[2]
    assert load_campaign(tmp_path / "c.yaml").spec_sha256 == c2.spec_sha256


@pytest.mark.parametrize(("change", "line", "field", "message"), [
    (("seeds: 3", "seeds: three"), 4, "seeds", "valid integer"),
    (("    diagnoser: embedded\n", "    diagnoser: embeded\n"), 16, "variants[1].diagnoser", "'embedded' or 'claude'"),
    (("      - {kind: kill_store, target: 2}", "      - {kind: kill_store, targte: 2}"), 32,
     "scenarios[0].faults[0].targte", "unknown field"),
    (("    model: claude-sonnet-5-5\n", ""), 18, "variants[2]", "names its model"),
    (("    approver: {decision: approve, delay_s: [1, 3]}\n", ""), 18, "variants[2]", "needs an approver"),
    (("    variants: [embedded]", "    variants: [embeded]"), 37, "scenarios[1].variants[0]", "unknown variant"),
    (("{compare: [embedded, baseline]", "{compare: [embedded, base]"), 41, "thresholds[2].compare[1]",
     "unknown variant 'base'"),
    (("  - {metric: harmful_trials, max: 0}", "  - {metric: harmful_trials}"), 40, "thresholds[1]",
     "exactly one of min or max"),
    (("  - {name: baseline, kind: baseline}", "  - {name: baseline, kind: baseline, diagnoser: embedded}"),
     13, "variants[0]", "remove diagnoser"),
    (("  - name: control", "  - name: kill"), 35, "scenarios[1].name", "duplicate name 'kill'"),
    (("name: small", "name: Small Campaign"), 2, "name", "should match pattern"),
])
def test_errors_name_file_line_and_field(tmp_path: Path, change: tuple[str, str], line: int, field: str,
                                         message: str) -> None:
    assert change[0] in GOOD
    err = error_of(tmp_path, GOOD.replace(change[0], change[1], 1))
    assert (err.line, err.field) == (line, field), str(err)
    assert message in err.message
    assert str(err).startswith(f"{tmp_path / 'c.yaml'}:{line}: {field}: ")
    assert "\n" not in str(err)


def test_yaml_syntax_and_file_errors(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("seeds: 3\n", "seeds: [3\n"))
    assert err.line is not None and "invalid YAML" in err.message
    (tmp_path / "prompt.md").unlink()
    err = error_of(tmp_path, GOOD, prompt=None)
    assert err.field == "variants[2].system_prompt" and "no such file" in err.message and err.line == 22
    err = error_of(tmp_path, "- just a list\n")
    assert "a campaign file is a mapping" in err.message
    with pytest.raises(SpecError, match="no such file"):
        load_campaign(tmp_path / "missing.yaml")


def test_plan_order_seeds_and_shards(tmp_path: Path) -> None:
    c = load_campaign(write(tmp_path, GOOD))
    plan = plan_campaign(c, adapter_of=None)
    # kill: 3 variants x 6 pairs; control: 1 variant x 6
    assert len(plan.trials) == 24 and len({t.key for t in plan.trials}) == 24
    assert [t.index for t in plan.trials] == list(range(24))
    # the variants of a pair share the seed; seeds differ across seed indices, not across repeats
    by_pair: dict[str, set[int]] = {}
    for t in plan.trials:
        by_pair.setdefault(t.pair_key, set()).add(t.seed)
    assert all(len(s) == 1 for s in by_pair.values())
    kill = {(t.seed_index, t.repeat): t.seed for t in plan.trials if t.scenario == "kill"}
    assert kill[(0, 0)] == kill[(0, 1)] != kill[(1, 0)]
    # blocked_random: each block holds one pair, in a seeded order that is not always the same
    blocks = [tuple(t.variant for t in plan.trials if t.pair_key == f"kill|{i}|{r}") for i in range(3) for r in range(2)]
    assert all(sorted(b) == ["baseline", "claude-v2", "embedded"] for b in blocks)
    assert len(set(blocks)) > 1
    assert plan_campaign(load_campaign(tmp_path / "c.yaml"), adapter_of=None).trials == plan.trials
    # shards: whole pairs, disjoint, together everything
    one = plan_campaign(c, shard=(1, 2), adapter_of=None)
    two = plan_campaign(c, shard=(2, 2), adapter_of=None)
    keys1, keys2 = {t.key for t in one.mine}, {t.key for t in two.mine}
    assert not keys1 & keys2 and keys1 | keys2 == {t.key for t in plan.trials}
    assert {t.pair_key for t in one.mine}.isdisjoint({t.pair_key for t in two.mine})
    assert abs(len(keys1) - len(keys2)) <= 3


def test_shard_syntax() -> None:
    assert parse_shard("2/3") == (2, 3)
    for bad in ("0/2", "3/2", "1-2", "a/b", "2"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_makespan() -> None:
    assert makespan([10, 10, 10], 2) == 20
    assert makespan([30, 10, 10, 10], 2) == 30
    assert makespan([5, 5], 1) == 10


def test_planner_refuses_a_campaign_over_its_budget(tmp_path: Path) -> None:
    c = load_campaign(write(tmp_path, GOOD.replace("campaign_wall_s: 100000", "campaign_wall_s: 600")))
    with pytest.raises(SpecError) as e:
        plan_campaign(c, adapter_of=None)
    err = e.value
    assert err.field == "budget.campaign_wall_s" and err.line == 7
    assert "over the budget of 10m00s" in err.message and "--allow-over-budget" in err.message
    plan = plan_campaign(c, adapter_of=None, allow_over_budget=True)
    worst = plan.worst_case_wall_s
    assert f"takes {worst // 3600:.0f}h" in err.message
    # more slots, less wall time
    assert plan_campaign(c, adapter_of=None, allow_over_budget=True, parallel=4).worst_case_wall_s < worst


def test_planner_refuses_thresholds_that_can_never_pass(tmp_path: Path) -> None:
    # 6 trials per cell: even 6/6 has a Wilson lower bound of 0.61
    text = GOOD.replace("min: 0.5, use: point", "min: 0.9, use: ci_lower")
    with pytest.raises(SpecError) as e:
        plan_campaign(load_campaign(write(tmp_path, text)), adapter_of=None)
    assert e.value.field == "thresholds[0]" and e.value.line == 39
    assert "can never pass" in e.value.message and "at least 35 trials" in e.value.message
    assert "Wilson lower bound of 0.61" in e.value.message
    # 0.6 is reachable with 6/6
    plan_campaign(load_campaign(write(tmp_path, GOOD.replace("min: 0.5, use: point", "min: 0.6, use: ci_lower"))),
                  adapter_of=None)
    # a comparison needs at least 6 pairs
    fewer = GOOD.replace("repeats: 2", "repeats: 1")
    with pytest.raises(SpecError, match=r"3 pairs planned .* needs at least 6"):
        plan_campaign(load_campaign(write(tmp_path, fewer)), adapter_of=None)
    # a rate above 1
    with pytest.raises(SpecError, match="a rate lies between 0 and 1"):
        plan_campaign(load_campaign(write(tmp_path, GOOD.replace("min: 0.5", "min: 1.5"))), adapter_of=None)
    # a rule on a variant that runs no faulted scenario
    only_control = GOOD.replace("{variant: embedded, metric: success_rate",
                                "{variant: baseline, scenario: control, metric: success_rate")
    with pytest.raises(SpecError, match="applies to no trial"):
        plan_campaign(load_campaign(write(tmp_path, only_control)), adapter_of=None)


def test_a_scenario_may_have_its_own_number_of_seeds(tmp_path: Path) -> None:
    text = GOOD.replace("    variants: [embedded]", "    variants: [embedded]\n    seeds: 1")
    plan = plan_campaign(load_campaign(write(tmp_path, text)), adapter_of=None)
    control = [t for t in plan.trials if t.scenario == "control"]
    assert [(t.seed_index, t.repeat) for t in control] == [(0, 0), (0, 1)]
    assert len([t for t in plan.trials if t.scenario == "kill"]) == 18
    # a rate threshold on a scenario with fewer seeds is judged on its own n
    low = text.replace("{variant: embedded, metric: success_rate, scope: each_scenario, min: 0.5, use: point}",
                       "{variant: embedded, scenario: control, metric: false_tickets, max: 0}\n"
                       "  - {variant: embedded, scenario: kill, metric: success_rate, min: 0.6, use: ci_lower}")
    plan_campaign(load_campaign(write(tmp_path, low)), adapter_of=None)  # 6/6 reaches 0.61
