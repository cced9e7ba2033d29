"""The agent's run_shell in a throw-away container (shell_sandbox = "docker"): a read-only image, a
private /tmp, no capabilities, pid/memory/time limits, output capped, nothing left behind."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from operator_tui.agent.docker_sandbox import SANDBOX_LABEL
from operator_tui.agent.shell import SandboxUnavailable, Shell, shell_action
from operator_tui.config import ClaudeSettings

pytestmark = pytest.mark.slow


@pytest.fixture
def shell(docker_engine: str, docker_client: Any) -> Iterator[Shell]:
    yield Shell(sandbox="docker", docker_host=docker_engine, timeout_s=20)
    left = docker_client.containers.list(all=True, filters={"label": f"{SANDBOX_LABEL}=shell"})
    assert left == [], "a sandbox container outlived its command"


async def test_writes_outside_tmp_are_refused_and_tmp_is_private(shell: Shell) -> None:
    host_dir = Path(tempfile.mkdtemp(prefix="operator-docker-shell-", dir="/var/tmp"))
    try:
        result = await shell.run(f"touch /etc/x; touch {host_dir}/x; echo hi > /tmp/y && cat /tmp/y; id -u")
        assert "Read-only file system" in result.stderr and result.stdout.splitlines()[0] == "hi"
        assert not (host_dir / "x").exists()
        # root in the container has no capabilities: it cannot remount its root writable
        remount = await shell.run("mount -o remount,rw / && touch /etc/x")
        assert remount.exit_code != 0
        caps = await shell.run("grep CapEff /proc/self/status")
        assert caps.stdout.split()[1] == "0000000000000000"
    finally:
        shutil.rmtree(host_dir, ignore_errors=True)


async def test_the_command_is_killed_at_its_time_limit(shell: Shell) -> None:
    token = f"{uuid.uuid4().int % 1000}"
    t0 = time.monotonic()
    result = await shell.run(f"echo started; sleep 3{token}", timeout_s=1.5)
    assert result.timed_out and result.exit_code is None and result.stdout == "started\n"
    assert time.monotonic() - t0 < 20


async def test_pids_memory_and_output_are_capped(shell: Shell) -> None:
    forks = await shell.run("for i in $(seq 200); do sleep 5 & done; wait", timeout_s=15)
    assert "fork" in forks.stderr.lower() or "resource temporarily unavailable" in forks.stderr.lower()
    big = await shell.run("head -c 100000 /dev/zero | tr '\\\\0' a")
    assert big.truncated and len(big.stdout) == shell.max_output
    env = await shell.run("env")
    assert "ANTHROPIC" not in env.stdout and "DOCKER_HOST" not in env.stdout


async def test_the_setting_selects_the_docker_sandbox_and_the_action_runs_in_it(shell: Shell) -> None:
    assert ClaudeSettings(shell_sandbox="docker").shell_sandbox == "docker"
    with pytest.raises(ValueError):
        ClaudeSettings(shell_sandbox="chroot")
    action = shell_action(shell)
    assert action.risk.value == "high"  # the same approval rules as with bwrap
    assert shell.check() == "docker"
    with pytest.raises(SandboxUnavailable, match="no Docker engine answers"):
        Shell(sandbox="docker", docker_host="unix:///nonexistent.sock").check()
