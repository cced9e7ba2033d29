"""The command line as a user runs it: real processes, the simulator over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from subjects.tikv.sim import SimThread

CLI = [sys.executable, "-m", "operator_tui"]


def cli(*args: str, timeout: float = 60, check: bool = False, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    if check:
        assert result.returncode == 0, result.stderr
    return result


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr, result.stderr


def tickets(db: Path) -> list[dict[str, Any]]:
    result = cli("tickets", "list", "--db", str(db), "--json", check=True)
    return json.loads(result.stdout)


def test_help_is_fast_and_imports_nothing_heavy() -> None:
    code = ("import sys, operator_tui.cli as c; c.build_parser().format_help(); "
            "heavy = [m for m in ('textual', 'httpx', 'aiohttp', 'anthropic', 'aiosqlite', 'pydantic') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    result = cli("--help", check=True)
    assert "operator-tui" in result.stdout and "sim" in result.stdout and "killswitch" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["sim", "tikv", "--stores", "0"], "--stores must be at least 1"),
    (["run", "--duration", "-1"], "--duration must be positive"),
    (["tickets", "list", "--db", "/nonexistent/x.db"], "no store at /nonexistent/x.db"),
    (["actions", "run", "transfer_leader"], "needs its PD endpoint"),
    (["--config", "/nonexistent.toml", "tickets", "list"], "config file /nonexistent.toml does not exist"),
])
def test_user_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    no_traceback(result)


def test_bad_config_values_are_named(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('interval = -3\nmode = "yolo"\n[actions]\nmax_retries = "many"\n')
    result = cli("--config", str(config), "tickets", "list")
    assert result.returncode == 2
    for fragment in ("interval", "mode", "actions.max_retries"):
        assert fragment in result.stderr
    no_traceback(result)


def test_settings_precedence_file_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from operator_tui.cli import build_parser
    from operator_tui.config import load_settings

    config = tmp_path / "c.toml"
    config.write_text('interval = 5.0\nagent = "none"\n[agent_options]\nverify_delay_s = 9\n')
    monkeypatch.setenv("OPERATOR_TUI_INTERVAL", "3")
    monkeypatch.setenv("OPERATOR_TUI_AGENT_OPTIONS__MAX_ATTEMPTS", "7")
    args = build_parser().parse_args(["--config", str(config), "run", "--interval", "2"])
    s = load_settings(args)
    assert s.interval == 2.0  # flag beats env beats file
    assert s.agent == "none"  # from the file
    assert s.agent_options.verify_delay_s == 9 and s.agent_options.max_attempts == 7
    args = build_parser().parse_args(["--config", str(config), "run"])
    assert load_settings(args).interval == 3.0


def test_subject_sections_come_typed_from_file_env_and_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from operator_tui.cli import build_parser
    from operator_tui.config import load_settings

    config = tmp_path / "c.toml"
    config.write_text('[tikv]\npd = "http://127.0.0.1:1"\nslo_p99_ms = 70\n[ratelimiter]\nredis = "redis://x:1/0"\n')
    monkeypatch.setenv("OPERATOR_TUI_RATELIMITER__NODES", '["http://127.0.0.1:5", "http://127.0.0.1:6"]')
    monkeypatch.setenv("OPERATOR_TUI_TIKV__GRACES__STORE_DOWN", "5")
    monkeypatch.setenv("OPERATOR_TUI_TIKV__SIM__STORES", "7")
    s = load_settings(build_parser().parse_args(["--config", str(config), "run", "--pd", "http://127.0.0.1:2"]))
    assert s.ratelimiter.nodes == ["http://127.0.0.1:5", "http://127.0.0.1:6"]  # a list, not a string
    assert s.ratelimiter.redis == "redis://x:1/0"
    assert s.tikv.graces == {"store_down": 5.0} and s.tikv.sim.stores == 7 and s.tikv.slo_p99_ms == 70
    assert s.tikv.pd == "http://127.0.0.1:2"  # the flag beats the file
    assert s.section() is s.tikv


@pytest.mark.parametrize("args, env, message", [
    (["--subject", "ratelimiter", "run", "--pd", "http://x"], {}, "--pd is a tikv option; the subject is ratelimiter"),
    (["tickets", "list"], {"OPERATOR_TUI_PDD": "x"}, "unknown setting in the environment: OPERATOR_TUI_PDD"),
    (["tickets", "list"], {"OPERATOR_TUI_TIKV__NOPE": "1"}, "tikv.nope"),
    (["run", "--headless", "--duration", "1"], {}, "needs its PD endpoint: pass --pd URL (or --sim"),
    (["--subject", "nosuch", "tickets", "list"], {}, "invalid choice: 'nosuch'"),
    (["lab", "up", "ratelimiter", "--stores", "3"], {}, "--stores is a tikv lab option; the ratelimiter lab"),
])
def test_subject_option_mistakes_are_one_line(tmp_path: Path, args: list[str], env: dict[str, str],
                                              message: str) -> None:
    result = subprocess.run([*CLI, "--db", str(tmp_path / "o.db"), "--lab-dir", str(tmp_path / "labs"), *args],
                            capture_output=True, text=True, env={**os.environ, **env}, timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    no_traceback(result)


def test_headless_run_opens_and_resolves_a_ticket_for_a_killed_store(sim: SimThread, tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    proc = subprocess.Popen([*CLI, "run", "--headless", "--subject", "tikv", "--pd", sim.pd_url, "--db", str(db),
                             "--interval", "1", "--agent", "none", "--duration", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not db.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)
        fault = httpx.post(f"{sim.admin_url}/sim/v1/faults", json={"kind": "kill_store", "store_id": 2}).json()["id"]
        killed_at = time.monotonic()
        opened = None
        while time.monotonic() - killed_at < 10:
            found = [t for t in tickets(db) if t["invariant"] == "store_unreachable" and t["entity"] == "store:2"]
            if found:
                opened = found[0]
                break
            time.sleep(0.2)
        assert opened is not None, "no ticket within 10 s of the kill"
        assert opened["status"] == "open"
        assert {"id", "invariant", "entity", "severity", "status", "opened_at", "resolved_at", "occurrences"} <= set(opened)
        httpx.delete(f"{sim.admin_url}/sim/v1/faults/{fault}")
        reverted_at = time.monotonic()
        status = None
        while time.monotonic() - reverted_at < 15:
            status = next(t for t in tickets(db) if t["id"] == opened["id"])["status"]
            if status == "resolved":
                break
            time.sleep(0.3)
        assert status == "resolved"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "ticket #1 opened: store_unreachable on store:2" in err
    no_traceback(subprocess.CompletedProcess([], 0, out, err))


def test_sigterm_mid_run_closes_the_run_and_the_store(sim: SimThread, tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    proc = subprocess.Popen([*CLI, "run", "--pd", sim.pd_url, "--db", str(db), "--interval", "0.2", "--agent",
                             "none"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60  # ticking (signal handlers in place), however slow the start
    while time.monotonic() < deadline and not _has_samples(db):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    no_traceback(subprocess.CompletedProcess([], 0, "", err))
    conn = sqlite3.connect(db)
    [(status, ended)] = conn.execute("SELECT status, ended_at FROM runs").fetchall()
    conn.close()
    assert status == "interrupted" and ended is not None


def _has_samples(db: Path) -> bool:
    try:
        conn = sqlite3.connect(db)
        try:
            return conn.execute("SELECT count(*) FROM samples").fetchone()[0] > 0
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def _leader_move(pd_url: str) -> tuple[int, int]:
    r = httpx.get(f"{pd_url}/pd/api/v1/region/id/10").json()
    target = next(p["store_id"] for p in r["peers"] if p["store_id"] != r["leader"]["store_id"])
    return r["id"], target


def test_actions_run_killswitch_and_audit_tamper(sim: SimThread, tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    region_id, target = _leader_move(sim.pd_url)
    result = cli("actions", "run", "transfer_leader", "--param", f"region_id={region_id}", "--param",
                 f"to_store_id={target}", "--db", db, "--pd", sim.pd_url)
    assert result.returncode == 0, result.stderr
    assert httpx.get(f"{sim.pd_url}/pd/api/v1/region/id/{region_id}").json()["leader"]["store_id"] == target
    [action] = json.loads(cli("actions", "list", "--json", "--db", db, check=True).stdout)
    assert action["state"] == "succeeded" and action["params"] == {"region_id": region_id, "to_store_id": target}

    dry = cli("actions", "run", "drain_store", "--param", "store_id=1", "--dry-run", "--db", db, "--pd", sim.pd_url)
    assert dry.returncode == 0 and "evict-leader-scheduler" in dry.stdout
    assert "evict-leader-scheduler" not in httpx.get(f"{sim.pd_url}/pd/api/v1/schedulers").json()

    bad = cli("actions", "run", "transfer_leader", "--param", "region_id=abc", "--param", "nope=1", "--db", db,
              "--pd", sim.pd_url)
    assert bad.returncode == 2 and "region_id" in bad.stderr and "unknown parameter nope" in bad.stderr
    no_traceback(bad)

    cli("killswitch", "on", "--db", db, check=True)
    refused = cli("actions", "run", "transfer_leader", "--param", f"region_id={region_id}", "--param",
                  "to_store_id=1", "--db", db, "--pd", sim.pd_url)
    assert refused.returncode == 2 and "kill switch is engaged" in refused.stderr
    no_traceback(refused)
    assert json.loads(cli("killswitch", "status", "--json", "--db", db, check=True).stdout)["engaged"] is True
    cli("killswitch", "off", "--db", db, check=True)

    verify = cli("audit", "verify", "--db", db)
    assert verify.returncode == 0 and "intact" in verify.stdout
    conn = sqlite3.connect(db)
    conn.execute("UPDATE audit_events SET actor = 'human:mallory' WHERE id = 3")
    conn.commit()
    broken = cli("audit", "verify", "--db", db)
    assert broken.returncode == 1 and "event 3" in broken.stdout
    conn.close()
    db = str(tmp_path / "b.db")  # a fresh chain, to see a removed newest event caught too
    cli("mode", "propose", "--db", db, check=True)
    cli("mode", "execute", "--db", db, check=True)
    assert cli("audit", "verify", "--db", db).returncode == 0
    conn = sqlite3.connect(db)
    newest = conn.execute("SELECT max(id) FROM audit_events").fetchone()[0]
    conn.execute("DELETE FROM audit_events WHERE id = ?", (newest,))
    conn.commit()
    conn.close()
    removed = cli("audit", "verify", "--db", db)
    assert removed.returncode == 1 and "missing" in removed.stdout


def test_approval_from_a_second_process(sim: SimThread, tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    cli("approval", "all", "--db", db, check=True)
    region_id, target = _leader_move(sim.pd_url)
    waiting = subprocess.Popen([*CLI, "actions", "run", "transfer_leader", "--param", f"region_id={region_id}",
                                "--param", f"to_store_id={target}", "--db", db, "--pd", sim.pd_url],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = waiting.stdout.readline()
        assert "awaits approval" in line, line
        action_id = line.split()[1]
        assert httpx.get(f"{sim.pd_url}/pd/api/v1/region/id/{region_id}").json()["leader"]["store_id"] != target
        approved = cli("actions", "approve", action_id, "--db", db)
        assert approved.returncode == 0, approved.stderr
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert waiting.returncode == 0, err
    assert "succeeded" in out
    assert httpx.get(f"{sim.pd_url}/pd/api/v1/region/id/{region_id}").json()["leader"]["store_id"] == target
    again = cli("actions", "approve", action_id, "--db", db)
    assert again.returncode == 2 and "already ran" in again.stderr
