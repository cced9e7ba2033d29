"""Helpers of the Docker tests (a module name of its own: every test folder's conftest is "conftest")."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from containers import nodes


def lab_chains() -> list[str]:
    """iptables chains of rate limiter faults (named OPRL...) that exist right now."""
    out = subprocess.run(["iptables", "-w", "5", "-S"], capture_output=True, text=True, check=True).stdout
    return sorted({line.split()[1] for line in out.splitlines() if line.startswith("-N OPRL")})


def assert_lab_gone(client: Any, run_dir: Path) -> None:
    left = [c.name for c in nodes.of_lab(client, run_dir)]
    assert not left, f"containers of {run_dir} left: {left}"
