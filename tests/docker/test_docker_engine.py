"""The project's own engine (scripts/dockerd.sh), its image cache, and the Docker lab from the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from docker_support import assert_lab_gone
from rl_support import free_block_lab, free_lab_ports

from containers import engine, images

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "dockerd.sh"

pytestmark = pytest.mark.slow


def script(command: str, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=120,
                          env={**os.environ, engine.DIR_ENV: str(folder)})


def mounts_under(folder: Path) -> list[str]:
    out = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True, check=True).stdout
    return [m for m in out.splitlines() if m == str(folder) or m.startswith(f"{folder}/")]


def processes_of(folder: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-af", str(folder)], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def test_an_engine_in_its_own_folder_starts_answers_and_stops_clean(docker_engine: str) -> None:
    folder = Path(f"/var/lib/operator-tui/docker-test-{uuid.uuid4().hex[:8]}")
    try:
        assert script("status", folder).returncode == 3
        started = script("start", folder)
        assert started.returncode == 0, started.stderr
        assert engine.answers(f"unix://{folder}/docker.sock")
        assert "already running" in script("start", folder).stdout  # idempotent
        assert script("env", folder).stdout.strip() == f"export DOCKER_HOST=unix://{folder}/docker.sock"
        assert script("status", folder).returncode == 0
        assert mounts_under(folder)  # the engine mounts its netns and data root while it runs
        stopped = script("stop", folder)
        assert stopped.returncode == 0, stopped.stderr
        assert processes_of(folder) == [] and mounts_under(folder) == []
        assert script("status", folder).returncode == 3
        assert not engine.answers(f"unix://{folder}/docker.sock")
    finally:
        script("stop", folder)
        shutil.rmtree(folder, ignore_errors=True)
    assert not folder.exists()


def test_images_are_built_once_and_labelled(docker_client: Any) -> None:
    again = images.build(docker_client, progress=lambda _line: None)
    assert [r["outcome"] for r in again] == ["cached"] * len(images.IMAGES)  # a second build rebuilds nothing
    for image in images.IMAGES.values():
        found = docker_client.images.get(image.tag)
        assert image.tag.startswith("operator-tui/")
        assert found.labels[images.LABEL_IMAGE] == image.name and found.labels[images.LABEL_INPUTS]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "operator_tui", *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


def test_lab_up_status_down_from_the_cli(docker_client: Any, tmp_path: Path) -> None:
    """--docker combines with --addresses (the containers' loopback block) and --redis-disk-mb (the
    size of Redis's tmpfs in its container)."""
    block, base = free_block_lab(2)
    where = ["--lab-dir", str(tmp_path)]
    up = cli("lab", "up", "ratelimiter", "--docker", "--nodes", "2", "--addresses", f"{block}.0/24",
             "--redis-disk-mb", "8", "--redis-port", str(base), "--base-port", str(base), "--no-load", *where)
    try:
        assert up.returncode == 0, up.stderr
        assert "containers on unix://" in up.stdout and f"n2      http://{block}.12:{base + 2}" in up.stdout
        assert "data on a 8 MiB tmpfs in its container at /data" in up.stdout
        status = cli("lab", "status", "ratelimiter", "--json", *where)
        data = json.loads(status.stdout)
        assert data["up"] and data["runtime"] == "docker" and data["addresses"] == f"{block}.0/24"
        assert data["redis_disk"]["mounted"] and 7 * 2**20 <= data["redis_disk"]["total_bytes"] <= 8 * 2**20
        assert [n["health"] for n in data["nodes"]] == ["ok", "ok"]
        assert {p["name"]: p["state"] for p in data["processes"]} == dict.fromkeys(("redis", "proxy", "n1", "n2"),
                                                                                  "alive")
        again = cli("lab", "up", "ratelimiter", "--docker", *where)
        assert again.returncode == 2 and "already up" in again.stderr
    finally:
        down = cli("lab", "down", "ratelimiter", *where)
    assert down.returncode == 0, down.stderr
    assert "no container of this lab left" in down.stdout
    assert_lab_gone(docker_client, tmp_path / "ratelimiter")
    assert (tmp_path / "ratelimiter" / "logs" / "n1.log").exists()  # each container's log is kept


def test_an_engine_that_does_not_answer_is_a_one_line_error(tmp_path: Path) -> None:
    redis_port, base = free_lab_ports(3)  # the default ports may be another lab's on a shared machine
    out = cli("lab", "up", "ratelimiter", "--docker", "--redis-port", str(redis_port), "--base-port", str(base),
              "--lab-dir", str(tmp_path), env={"DOCKER_HOST": f"unix://{tmp_path}/no-such.sock"})
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "no Docker engine answers at unix://" in out.stderr
    assert not (tmp_path / "ratelimiter" / "state.json").exists()
