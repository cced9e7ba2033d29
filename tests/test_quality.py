"""The project's own rules, checked in the test run: layering, lint, import hygiene."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_layering_contracts_hold() -> None:
    """subjects never import the core or Textual; the core imports Textual only in app.py/cli.py."""
    result = subprocess.run([str(BIN / "lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_ruff_is_clean() -> None:
    result = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


def test_headless_core_never_imports_textual() -> None:
    code = (
        "import sys\n"
        "import operator_tui.headless, operator_tui.loop, operator_tui.agent.factory, operator_tui.agent.claude\n"
        "import operator_tui.commands.actions, operator_tui.commands.chaos, operator_tui.commands.tickets\n"
        "import subjects.tikv.subject, subjects.tikv.sim\n"
        "print(sorted(m for m in ('textual', 'anthropic', 'plotext') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
