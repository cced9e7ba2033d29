"""`eval compare A B`: two campaigns (or two variants of two campaigns) on the same seeds.

Typical use: the same campaign file run on two revisions of the operator, or with two prompt
files. Trials pair on (scenario, seed index, repeat) and only where the scenario's spec hash and
the trial seed are the same in both campaigns (otherwise the two trials did not face the same
fault schedule, and pairing them would be dishonest); scenarios that differ are left out and named.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from eval.campaign_analysis import compare
from eval.campaign_results import CampaignRecord, TrialResult
from eval.campaign_spec import Campaign


def parse_side(text: str) -> tuple[int, str | None]:
    """'12' -> (12, None); '12:embedded' -> (12, 'embedded')."""
    ident, _, variant = text.partition(":")
    if not ident.isdigit():
        raise ValueError(f"expected a campaign id or ID:VARIANT, got {text!r}")
    return int(ident), (variant or None)


Side = tuple[Campaign, CampaignRecord, list[TrialResult]]


def compare_campaigns(left: Side, right: Side, variant_a: str | None, variant_b: str | None) -> dict[str, Any]:
    ca, ra, ta = left
    cb, rb, tb = right
    notes: list[str] = []
    if variant_a or variant_b:
        va = variant_a or variant_b
        vb = variant_b or variant_a
        assert va is not None and vb is not None
        for c, r, v in ((ca, ra, va), (cb, rb, vb)):
            if v not in {x.name for x in c.spec.variants}:
                raise ValueError(f"campaign {r.id} has no variant {v!r}")
        pairs = [(va, vb)]
    else:
        common = [v.name for v in ca.spec.variants if v.name in {x.name for x in cb.spec.variants}]
        if not common:
            raise ValueError(f"campaigns {ra.id} and {rb.id} share no variant name; name them: A:VARIANT B:VARIANT")
        pairs = [(v, v) for v in common]
    scenarios = []
    for s in ca.spec.scenarios:
        if s.control or s.name not in {x.name for x in cb.spec.scenarios}:
            continue
        if ca.scenario_sha256(s.name) != cb.scenario_sha256(s.name):
            notes.append(f"scenario {s.name} left out: its spec differs between the campaigns")
            continue
        scenarios.append(s.name)
    if not scenarios:
        raise ValueError(f"campaigns {ra.id} and {rb.id} share no scenario with the same spec: nothing to pair")
    if ra.git_rev == rb.git_rev and not (ra.git_dirty or rb.git_dirty):
        same = [a for a, b in pairs if ca.variant_sha256(a) == cb.variant_sha256(b)]
        if same:
            notes.append(f"same git revision and same config for {', '.join(same)}: differences are noise")
    out: list[dict[str, Any]] = []
    for va, vb in pairs:
        name_a, name_b = f"{ra.id}:{va}", f"{rb.id}:{vb}"
        seeds_b = {(t.scenario, t.seed_index, t.repeat): t.seed for t in tb if t.variant == vb}
        mine = [replace(t, variant=name_a) for t in ta if t.variant == va and t.scenario in scenarios]
        theirs = [replace(t, variant=name_b) for t in tb if t.variant == vb and t.scenario in scenarios]
        mismatched = [t.key for t in mine if seeds_b.get((t.scenario, t.seed_index, t.repeat), t.seed) != t.seed]
        if mismatched:
            notes.append(f"{len(mismatched)} pairs of {va} left out: different seeds (another root seed?)")
            mine = [t for t in mine if t.key not in set(mismatched)]
        out += compare(ca, mine + theirs, name_a, name_b, scenarios=scenarios)
    return {"a": ra.id, "b": rb.id, "notes": notes, "comparisons": out}
