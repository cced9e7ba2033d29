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


def test_lab_down_ends_the_faults_injected_into_it_and_no_others(tmp_path: Path) -> None:
    """A fault injected from the CLI and never reverted stayed `active` after its lab went down:
    `chaos list --active` showed it forever, and incident timelines stretched back to it."""
    import asyncio

    from operator_tui.store import Store
    from subjects.base import FaultRecord

    labs, db = tmp_path / "labs", str(tmp_path / "c.db")
    up = cli("lab", "up", "tikv", "--port", "0", "--stores", "3", "--regions", "30", "--lab-dir", str(labs))
    assert up.returncode == 0, up.stderr
    try:
        for target in ("2", "3"):
            injected = cli("chaos", "inject", "kill_store", "--target", target, "--lab-dir", str(labs), "--db", db)
            assert injected.returncode == 0, injected.stderr
        assert cli("chaos", "revert", "1", "--lab-dir", str(labs), "--db", db).returncode == 0

        async def others() -> None:  # another simulator's fault, and another subject's on a lab of the same name
            store = await Store.open(db)
            await store.record_fault(FaultRecord(subject="tikv", kind="kill_store", target="1", undo={
                "method": "DELETE", "url": "http://127.0.0.1:9", "path": "/sim/v1/faults/1"}), "human:test")
            await store.record_fault(FaultRecord(subject="etcd", kind="kill_member", target="m1", undo={
                "lab_dir": str((labs / "tikv").resolve())}), "human:test")
            await store.close()
        asyncio.run(others())
    finally:
        down = cli("lab", "down", "tikv", "--lab-dir", str(labs), "--db", db)
    assert down.returncode == 0, down.stderr
    assert "fault 2 (kill_store on 3) ended with the lab" in down.stdout
    assert "fault 1 " not in down.stdout and "fault 3 " not in down.stdout
    faults = json.loads(cli("chaos", "list", "--json", "--db", db).stdout)
    assert [(f["id"], f["status"]) for f in faults] == [(1, "reverted"), (2, "ended"), (3, "active"), (4, "active")]
    assert faults[1]["revert_detail"] == "its lab went down" and faults[1]["reverted_at"]
    active = json.loads(cli("chaos", "list", "--active", "--json", "--db", db).stdout)
    assert [f["id"] for f in active] == [3, 4]
    again = cli("chaos", "revert", "2", "--db", db, "--lab-dir", str(labs))
    assert again.returncode == 0 and "already ended" in again.stdout
    # a store that does not exist is not created by a lab down
    twice = cli("lab", "down", "tikv", "--lab-dir", str(labs), "--db", str(tmp_path / "none.db"))
    assert twice.returncode == 2 and "no TiKV lab is up" in twice.stderr
    assert not (tmp_path / "none.db").exists()


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
