"""The campaigns we ship plan as their headers promise (`eval campaign FILE --plan`, nothing runs):
ci.yaml and docker.yaml whole, full.yaml in each of the three shards it is sized for. A campaign
edited past its own budget, or naming a fault kind or lab option an adapter lost, fails here
rather than in the night."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGNS = ROOT / "scenarios" / "campaigns"
SCRIPT = Path(sys.executable).parent / "operator-tui"
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "operator_tui"]


def plan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "eval", "campaign", *args, "--plan"], capture_output=True, text=True, timeout=60)


def test_every_shipped_campaign_is_listed_here() -> None:
    assert sorted(p.name for p in CAMPAIGNS.glob("*.yaml")) == ["ci.yaml", "docker.yaml", "full.yaml"]


@pytest.mark.parametrize("name", ["ci.yaml", "docker.yaml"])
def test_a_whole_campaign_plans_within_its_budget(name: str) -> None:
    result = plan(str(CAMPAIGNS / name))
    assert result.returncode == 0, result.stderr
    assert "worst case" in result.stdout and "budget" in result.stdout


@pytest.mark.parametrize("shard", ["1/3", "2/3", "3/3"])
def test_full_plans_within_its_budget_in_each_of_its_three_shards(shard: str) -> None:
    result = plan(str(CAMPAIGNS / "full.yaml"), "--shard", shard)
    assert result.returncode == 0, result.stderr
    assert f"shard {shard}" in result.stdout


def test_full_unsharded_is_refused_with_the_overrun_named() -> None:
    result = plan(str(CAMPAIGNS / "full.yaml"))
    assert result.returncode == 2
    assert "over the budget" in result.stderr and "--allow-over-budget" in result.stderr
