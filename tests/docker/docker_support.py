"""Helpers of the Docker tests (a module name of its own: every test folder's conftest is "conftest")."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from containers import nodes


def chains_listed(names: set[str]) -> list[str]:
    """Which of the iptables chains `names` exist right now (by name only: other engineers' tests
    make chains of their own on this machine, and are none of our business)."""
    out = subprocess.run(["iptables", "-w", "5", "-S"], capture_output=True, text=True, check=True).stdout
    return sorted({line.split()[1] for line in out.splitlines() if line.startswith("-N ")} & names)


def assert_lab_gone(client: Any, run_dir: Path) -> None:
    left = [c.name for c in nodes.of_lab(client, run_dir)]
    assert not left, f"containers of {run_dir} left: {left}"
