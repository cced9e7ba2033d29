"""The campaign report as JSON, schema `operator-eval-report/1` (reference §6).

Versioned: a consumer checks `schema`; a change that removes or renames a key makes it
`operator-eval-report/2`. Trials are listed in a fixed order (scenario, seed index, repeat,
variant as in the spec), so two reports of the same trials are equal whatever order they ran in.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from eval.campaign_analysis import Analysis
from eval.campaign_results import CampaignRecord, TrialResult
from eval.campaign_spec import Campaign

SCHEMA = "operator-eval-report/1"


def trial_order(campaign: Campaign) -> Any:
    scenarios = {s.name: i for i, s in enumerate(campaign.spec.scenarios)}
    variants = {v.name: i for i, v in enumerate(campaign.spec.variants)}

    def key(t: TrialResult) -> tuple[int, int, int, int]:
        return (scenarios.get(t.scenario, 999), t.seed_index, t.repeat, variants.get(t.variant, 999))

    return key


def trial_json(t: TrialResult) -> dict[str, Any]:
    return {
        "key": t.key, "scenario": t.scenario, "variant": t.variant, "variant_kind": t.variant_kind,
        "seed_index": t.seed_index, "repeat": t.repeat, "pair_key": t.pair_key, "seed": t.seed,
        "trial_id": t.trial_id, "run_id": t.run_id, "slot": t.slot, "attempt": t.attempt,
        "outcome": t.outcome, "self_healed": t.self_healed, "valid": t.valid, "error": t.error,
        "duration_s": t.duration_s, "budget_s": t.budget_s, "phases": t.phases, "faults": t.faults,
        "metrics": {**t.metrics, "ttm_rmst": t.ttm_rmst},
    }


def report(campaign: Campaign, record: CampaignRecord, trials: list[TrialResult], analysis: Analysis) -> dict[str, Any]:
    spec = campaign.spec
    return {
        "schema": SCHEMA,
        "campaign": {
            **asdict(record),
            "seeds": spec.seeds,
            "repeats": spec.repeats,
            "file": str(campaign.path),
        },
        "status": analysis.status,
        "verdict": analysis.verdict,
        "exit_code": analysis.exit_code,
        "reasons": analysis.reasons,
        "counts": {"planned": analysis.planned, **analysis.outcomes},
        "variants": [{"name": v.name, "kind": v.kind, "config": campaign.variant_config(v.name),
                      "config_sha256": campaign.variant_sha256(v.name)} for v in spec.variants],
        "scenarios": [{"name": s.name, "subject": s.subject, "control": s.control,
                       "faults": [f.model_dump(mode="json") for f in s.faults],
                       "variants": [v.name for v in spec.variants_of(s)],
                       "spec_sha256": campaign.scenario_sha256(s.name)} for s in spec.scenarios],
        "trials": [trial_json(t) for t in sorted(trials, key=trial_order(campaign))],
        "aggregates": analysis.aggregates,
        "comparisons": analysis.comparisons,
        "thresholds": analysis.thresholds,
        "integrity": analysis.integrity,
    }


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, default=str) + "\n"
