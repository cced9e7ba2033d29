"""The TiKV lab: the simulator as a background process, found by the chaos command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from subjects.tikv.lab import (
    LabError,
    advertise_embedded,
    lab_down,
    lab_status,
    lab_up,
    state_file,
    withdraw_embedded,
)
from tests.core.test_cli import cli


def test_lab_up_chaos_down(tmp_path: Path) -> None:
    labs = tmp_path / "labs"
    up = cli("lab", "up", "tikv", "--port", "0", "--stores", "3", "--regions", "30", "--lab-dir", str(labs))
    assert up.returncode == 0, up.stderr
    try:
        state = lab_status(labs / "tikv")
        assert state and state["alive"] and state["pd_url"].startswith("http://127.0.0.1:")
        assert state["admin_url"] != state["pd_url"] != state["host_agent_url"]
        # PD's port does not take faults: `chaos --pd` without the admin API is refused
        refused = cli("chaos", "inject", "kill_store", "--target", "2", "--pd", "http://127.0.0.1:9",
                      "--lab-dir", str(labs), "--db", str(tmp_path / "c.db"))
        assert refused.returncode == 2 and "--sim-admin" in refused.stderr
        again = cli("lab", "up", "tikv", "--port", "0", "--lab-dir", str(labs))
        assert again.returncode == 2 and "already up" in again.stderr
        db = str(tmp_path / "c.db")
        injected = cli("chaos", "inject", "kill_store", "--target", "2", "--lab-dir", str(labs), "--db", db)
        assert injected.returncode == 0, injected.stderr
        [fault] = json.loads(cli("chaos", "list", "--json", "--db", db).stdout)
        assert fault["kind"] == "kill_store" and fault["target"] == "2" and fault["status"] == "active"
        assert cli("chaos", "revert", "--all", "--db", db, "--lab-dir", str(labs)).returncode == 0
        assert json.loads(cli("chaos", "list", "--json", "--db", db).stdout)[0]["status"] == "reverted"
    finally:
        down = cli("lab", "down", "tikv", "--lab-dir", str(labs))
    assert down.returncode == 0, down.stderr
    assert lab_status(labs / "tikv") is None
    from subjects.tikv.lab import _alive

    assert not _alive(int(state["pid"]))  # gone (or a zombie waiting for init to reap it)


def test_a_consoles_embedded_simulator_is_not_the_labs_to_stop(tmp_path: Path) -> None:
    run_dir = tmp_path / "tikv"
    run_dir.mkdir()
    state_file(run_dir).write_text(json.dumps({"pid": os.getpid(), "pd_url": "http://127.0.0.1:1", "embedded": True}))
    with pytest.raises(LabError, match="belongs to a running console"):
        lab_down(run_dir)
    with pytest.raises(LabError, match="quit that console first"):
        lab_up(run_dir)
    assert state_file(run_dir).exists()


def test_embedded_simulator_is_advertised_only_when_free_and_withdrawn_only_by_its_owner(tmp_path: Path) -> None:
    folder = tmp_path / "tikv"
    assert advertise_embedded(folder, "http://127.0.0.1:1", "http://127.0.0.1:3", "http://127.0.0.1:4")
    state = json.loads(state_file(folder).read_text())
    assert state["embedded"] is True and state["admin_url"] == "http://127.0.0.1:3"
    withdraw_embedded(folder)
    assert not state_file(folder).exists()
    # Another live lab (here: pid 1) owns it: neither taken over nor removed.
    folder.mkdir(exist_ok=True)
    state_file(folder).write_text(json.dumps({"pid": 1, "pd_url": "http://127.0.0.1:2"}))
    assert not advertise_embedded(folder, "http://127.0.0.1:1", "http://127.0.0.1:3", "http://127.0.0.1:4")
    withdraw_embedded(folder)
    assert json.loads(state_file(folder).read_text())["pd_url"] == "http://127.0.0.1:2"
