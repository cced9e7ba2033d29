"""compose/ratelimiter with Debian's docker-compose against the local engine and the local images:
up -> Operator watches it (every node up, Redis reachable, Prometheus scraping) -> down, nothing left."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from docker_support import compose, scraped
from rl_subject_support import observe_until

from subjects import registry
from subjects.base import NodeState

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose" / "ratelimiter" / "docker-compose.yml"
NODES = [f"http://127.19.0.{i}:1710{i}" for i in (1, 2, 3)]
PROMETHEUS = "http://127.19.0.200:19090"

pytestmark = pytest.mark.slow


async def test_compose_up_is_watched_by_operator_then_down(docker_engine: str, docker_client: Any) -> None:
    project = f"optui-test-{uuid.uuid4().hex[:6]}"
    try:
        up = compose(COMPOSE, project, docker_engine, "up", "-d")
        assert up.returncode == 0, up.stderr
        subject = await registry.build_subject("ratelimiter", {"nodes": NODES,
                                                               "redis": "redis://127.19.0.100:16379/0"})
        try:
            obs = await observe_until(subject, lambda o: o if o.reachable and sorted(
                n.id for n in o.nodes if n.kind == "node" and n.state == NodeState.up) == ["n1", "n2", "n3"]
                else None, timeout=60, what="the compose cluster's 3 nodes up")
            assert obs.details["redis"]["reachable"]
        finally:
            await subject.aclose()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with_load = [r for r in scraped(PROMETHEUS, 'rate(ratelimiter_checks_total[10s])')
                         if float(r["value"][1]) > 0]
            up_targets = [r for r in scraped(PROMETHEUS, 'up{job="ratelimiter"}') if r["value"][1] == "1"]
            if len(up_targets) == 3 and with_load:
                break
            time.sleep(1)
        assert len(up_targets) == 3 and with_load, (up_targets, with_load)
    finally:
        down = compose(COMPOSE, project, docker_engine, "down", "--remove-orphans")
    assert down.returncode == 0, down.stderr
    left = docker_client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"})
    assert left == []
