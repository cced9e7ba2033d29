"""Helpers of the Docker tests (a module name of its own: every test folder's conftest is "conftest")."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from containers import nodes
from subjects.netfault import Chain


def chains_listed(names: set[str]) -> list[str]:
    """Which of the iptables chains `names` exist right now (by name only: other engineers' tests
    make chains of their own on this machine, and are none of our business)."""
    out = subprocess.run(["iptables", "-w", "5", "-S"], capture_output=True, text=True, check=True).stdout
    return sorted({line.split()[1] for line in out.splitlines() if line.startswith("-N ")} & names)


def assert_lab_gone(client: Any, run_dir: Path) -> None:
    left = [c.name for c in nodes.of_lab(client, run_dir)]
    assert not left, f"containers of {run_dir} left: {left}"


def assert_etcd_lab_gone(lab: Any, state: Any) -> None:
    """`lab down` the Docker etcd lab if it is still there, remove by force whatever that left, and
    check that nothing is left: no container in the engine's listing, process, listener, mount or chain."""
    from etcd_support import leftovers

    from subjects import processes

    try:
        if lab.state_path.exists():
            lab.down()
    finally:
        client = lab._client(state) if state is not None else None
        if client is not None:
            nodes.remove_lab(client, lab.run_dir)
        if state is not None:
            for rec in state.processes.values():
                processes.stop(rec, 2.0)
            for chain in state.chains:
                Chain(chain).delete()
            for m in state.members:
                subprocess.run(["umount", "-l", m.folder], capture_output=True, check=False)
    if client is not None:
        assert_lab_gone(client, lab.run_dir)
        lab.close()
    if state is not None:
        assert leftovers(lab, state) == []


def compose(file: Path, project: str, engine: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Debian's docker-compose on `file` as project `project`, against the engine at `engine`."""
    return subprocess.run(["docker-compose", "-f", str(file), "-p", project, *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "DOCKER_HOST": engine})


def scraped(prometheus: str, query: str) -> list[dict[str, Any]]:
    """The result vector of an instant query."""
    import httpx

    r = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]["result"]
