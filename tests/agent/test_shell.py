"""The run_shell sandbox (real bwrap) and its policy, and how the diagnoser routes commands."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_support import Setup, diagnosis_input
from aiohttp import web
from fakes.messages_api import Received, message, tool_use

from operator_tui.actions.decisions import approve
from operator_tui.actions.states import ActionState
from operator_tui.agent.shell import (
    SandboxUnavailable,
    Shell,
    classify,
    find_bwrap,
    register_shell_action,
    run_sandboxed,
)
from operator_tui.policy import set_approval
from subjects.base import ActionRequest

if shutil.which("bwrap") is None:  # a missing sandbox must fail the run, not skip it green
    raise RuntimeError("bwrap is not installed: run scripts/setup.sh (Debian package bubblewrap)")


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A writable directory on the host outside /tmp (the sandbox's /tmp is private)."""
    path = Path(tempfile.mkdtemp(prefix="operator-shell-test-", dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- the sandbox ------------------------------------------------------------------------------


async def test_writing_outside_tmp_fails(host_dir: Path) -> None:
    target = host_dir / "written-from-the-sandbox"
    result = await run_sandboxed(f"touch {target}", 20, 4096)
    assert result.exit_code != 0 and "Read-only file system" in result.stderr
    assert not target.exists()
    # Root inside the sandbox has no capabilities: it cannot make the root writable again.
    remount = await run_sandboxed(f"mount -o remount,rw / && touch {target}", 20, 4096)
    assert remount.exit_code != 0 and not target.exists()


async def test_tmp_is_private_and_writable() -> None:
    name = f"operator-sandbox-{uuid.uuid4().hex}"
    result = await run_sandboxed(f"echo hello > /tmp/{name} && cat /tmp/{name}", 20, 4096)
    assert result.exit_code == 0 and result.stdout == "hello\n"
    assert not await asyncio.to_thread(os.path.exists, os.path.join("/tmp", name))


async def test_secrets_do_not_reach_the_sandbox(host_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-value")
    (host_dir / "secret.txt").write_text("top secret")
    result = await run_sandboxed(f"env; ls {host_dir}; cat {host_dir}/secret.txt", 20, 8192, hidden=[str(host_dir)])
    assert "sk-ant-secret-value" not in result.stdout
    assert "top secret" not in result.stdout and "No such file" in result.stderr


async def test_timeout_kills_the_command() -> None:
    token = f"{uuid.uuid4().int % 10_000}.{uuid.uuid4().int % 1000:03d}"  # a unique sleep duration
    t0 = time.monotonic()
    result = await run_sandboxed(f"sleep 3{token}", 1.0, 4096)
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - t0 < 20
    # Nothing of it keeps running on the host (a zombie awaiting its reaper is dead too).
    for _ in range(75):
        if not _running_with(f"3{token}"):
            break
        await asyncio.sleep(0.2)
    assert not _running_with(f"3{token}")


def _running_with(token: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if token.encode() in cmdline and "Z" not in state.split()[1]:
            out.append(int(entry.name))
    return out


async def test_output_is_capped() -> None:
    result = await run_sandboxed("yes operator | head -c 100000; echo done >&2", 20, 1000)
    assert result.truncated and len(result.stdout) == 1000 and result.exit_code == 0
    assert result.stderr == "done\n"


async def test_loopback_network_is_available() -> None:
    app = web.Application()

    async def stores(_request: web.Request) -> web.Response:
        return web.json_response({"count": 3})

    app.router.add_get("/pd/api/v1/stores", stores)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/pd/api/v1/stores"
        assert classify(f"curl -s {url}").kind == "read_only"
        result = await run_sandboxed(f"curl -s -m 10 {url}", 20, 4096)
        assert result.exit_code == 0 and '"count": 3' in result.stdout
    finally:
        await runner.cleanup()


async def test_missing_bwrap_fails_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        find_bwrap()
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        await run_sandboxed("true", 5, 100)
    with pytest.raises(SandboxUnavailable):
        Shell(bwrap=str(tmp_path / "bwrap")).check()


# -- the policy -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    "cat /proc/loadavg", "ps aux | grep tikv | wc -l", "df -h", "free -m", "uptime", "ss -tlnp",
    "curl -s http://127.0.0.1:2379/pd/api/v1/stores", "curl -sS -m 5 -X GET http://127.0.0.1:2379/pd/api/v1/config",
    "ls -la /var/log && tail -n 50 /var/log/syslog", "grep -c error /var/log/syslog 2>/dev/null", "echo 'a | b; c'",
    "journalctl -u tikv --since '5 min ago'", "find /etc -name '*.toml'",
])
def test_read_only_commands(command: str) -> None:
    assert classify(command).kind == "read_only", classify(command)


@pytest.mark.parametrize("command", [
    "rm -rf /var/lib/tikv", "curl -X DELETE http://127.0.0.1:2379/pd/api/v1/schedulers/x",
    "curl -d '{}' http://127.0.0.1:2379/pd/api/v1/config", "curl -o /tmp/x http://127.0.0.1/",
    "ls > /tmp/listing", "cat /etc/hosts | tee /tmp/x", "echo $(date)", "ls `pwd`", "find / -name core -delete",
    "sort -o /tmp/out /etc/hosts", "python3 -c 'print(1)'", "FOO=1 ls", "/tmp/tool --check", "sleep 5 &",
    "curl file:///etc/shadow",
])
def test_commands_that_need_approval(command: str) -> None:
    assert classify(command).kind == "needs_approval", classify(command)


@pytest.mark.parametrize("command", [
    "reboot", "systemctl stop tikv", "sudo ls", "dd if=/dev/zero of=/dev/sda", "mkfs.ext4 /dev/sdb",
    "echo $(shutdown -h now)", "sh -c 'kill -9 1'", "timeout 5 pkill tikv", "ls; iptables -F", ":(){ :|:& };:",
    "cat a\nreboot", "echo 'unterminated",
])
def test_denied_commands(command: str) -> None:
    assert classify(command).kind == "denied", classify(command)


# -- routing through the engine ---------------------------------------------------------------


async def test_run_shell_action_runs_in_the_sandbox(setup: Setup, host_dir: Path) -> None:
    definition = register_shell_action(setup.engine.catalogue, Shell())
    assert definition.risk.value == "high" and not definition.idempotent
    records = await setup.engine.submit([ActionRequest(name="run_shell", params={"command": f"touch {host_dir}/x"})],
                                        actor="human:test")
    final = (await setup.engine.wait_for([records[0].id], timeout=60))[0]
    assert final.state == "failed" and "Read-only file system" in final.result["data"]["stderr"]
    assert not (host_dir / "x").exists()
    denied = await setup.engine.submit([ActionRequest(name="run_shell", params={"command": "reboot"})],
                                       actor="human:test")
    final = (await setup.engine.wait_for([denied[0].id], timeout=60))[0]
    assert final.state == "failed" and "refused" in final.reason


async def test_diagnoser_routes_commands_by_policy(setup: Setup) -> None:
    """Read-only: run at once. Denied: refused. Anything else: a high-risk action that, under
    approval `risky`, waits for a human; once approved it runs in the sandbox."""
    await set_approval(setup.store, "risky", "human:test")
    seen: dict[str, Any] = {}

    def after_commands(req: Received) -> dict[str, Any]:
        ro = req.result_for("t_ro")
        assert not ro.get("is_error") and "operator-sandbox-ok" in ro["content"]
        denied = req.result_for("t_denied")
        assert denied["is_error"] and "refused" in denied["content"] and "Nothing ran" in denied["content"]
        pending = req.result_for("t_write")
        assert "awaits a human's approval" in pending["content"] and "risk high" in pending["content"]
        seen["pending"] = pending["content"]
        return message(tool_use("submit_diagnosis", diagnosis_input(), "t_sub"))

    setup.api.script = [
        message(tool_use("run_shell", {"command": "echo operator-sandbox-ok"}, "t_ro"),
                tool_use("run_shell", {"command": "systemctl restart tikv"}, "t_denied"),
                tool_use("run_shell", {"command": "echo note > /tmp/n && cat /tmp/n", "reason": "scratch"},
                         "t_write")),
        after_commands,
    ]
    diagnoser = setup.claude(enable_shell=True, shell=Shell(timeout_s=20))
    await diagnoser.diagnose(setup.context, setup.record)

    actions = await setup.store.list_actions(ticket_id=setup.ticket.id)
    assert [(a.name, a.state, a.risk, a.requested_by) for a in actions] == [
        ("run_shell", ActionState.awaiting_approval.value, "high", "agent")]
    assert actions[0].session_id == setup.session_id
    # A human approves: the engine runs it in the sandbox.
    await approve(setup.store, actions[0].id, "human:test")
    final = (await setup.engine.wait_for([actions[0].id], timeout=60))[0]
    assert final.state == "succeeded" and final.result["data"]["stdout"] == "note\n"


async def test_diagnoser_waits_for_the_outcome_when_no_approval_is_needed(setup: Setup) -> None:
    def after(req: Received) -> dict[str, Any]:
        content = req.result_for("t_rw")["content"]
        assert "it ran" in content and "scratch-ok" in content
        return message(tool_use("submit_diagnosis", diagnosis_input(), "t_sub"))

    setup.api.script = [message(tool_use("run_shell", {"command": "echo scratch-ok > /tmp/s; cat /tmp/s"}, "t_rw")),
                        after]
    await setup.claude(enable_shell=True).diagnose(setup.context, setup.record)
    (action,) = await setup.store.list_actions(ticket_id=setup.ticket.id)
    assert action.state == "succeeded" and action.requested_by == "agent"


def test_the_hidden_defaults_cover_the_operator_data(monkeypatch: pytest.MonkeyPatch) -> None:
    from operator_tui.agent.shell import default_hidden
    from operator_tui.paths import data_dir

    hidden = default_hidden()
    assert str(data_dir()) in hidden and os.path.expanduser("~") in hidden
