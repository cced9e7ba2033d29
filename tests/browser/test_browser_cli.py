"""`eval browse` refuses what it cannot open (one line, exit 2); `eval report --markdown` writes the
summary with each failing trial's timeline as text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.browser.conftest import FAILURES, PASSING


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "operator_tui", *args], capture_output=True, text=True, timeout=120)


def test_browse_refuses_a_missing_store_and_an_unknown_campaign(tmp_path: Path, eval_db: Path) -> None:
    missing = _cli("--db", str(tmp_path / "none.db"), "eval", "browse")
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "no store at" in missing.stderr
    unknown = _cli("--db", str(eval_db), "eval", "browse", "42")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == f"operator-tui: error: no campaign 42 in {eval_db} (campaigns: 1, 2, 3)"
    assert not (tmp_path / "none.db").exists()  # nothing created by a refused browse


def test_report_markdown_lists_failing_trials_with_their_timelines(tmp_path: Path, eval_db: Path) -> None:
    out = tmp_path / "summary.md"
    run = _cli("--db", str(eval_db), "eval", "report", str(FAILURES), "--markdown", str(out))
    assert run.returncode == 1, run.stderr  # a threshold failed
    text = out.read_text()
    assert run.stdout.startswith(text.rstrip("\n")[:200])  # the same summary on stdout
    for section in ("## Thresholds", "## Results", "## Paired comparisons", "## Failing trials", "## Integrity"):
        assert section in text
    failing = text.split("## Failing trials")[1].split("## Integrity")[0]
    heads = [line for line in failing.splitlines() if line.startswith("### Trial")]
    assert [h.rsplit("**", 2)[1] for h in heads] == ["failure", "harmful", "invalid", "timeout"]
    harmful = failing.split("**harmful**")[1].split("### Trial")[0]
    assert "fault   kill_store on store:2: +10.0s -> +20.0s (revert_verified)" in harmful
    assert "oracle  mitigated at +17.0s (TTM 7.0s)" in harmful
    assert "remove_store store:2 [destructive] -> succeeded" in harmful
    assert "kill_store" in failing and "```" in failing
    assert "baseline" not in "\n".join(heads)  # a baseline that times out is what a baseline does
    passing = tmp_path / "pass.md"
    ok = _cli("--db", str(eval_db), "eval", "report", str(PASSING), "--markdown", str(passing))
    assert ok.returncode == 0, ok.stderr
    assert "## Failing trials" not in passing.read_text()
