"""compose/etcd with Debian's docker-compose against the local engine and the local images:
up -> Operator watches it (3 members up, one leader, no alarm; Prometheus scraping each) -> down -v,
nothing left (containers and volumes)."""

from __future__ import annotations

import contextlib
import fcntl
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from docker_support import compose, scraped
from etcd_support import healthy, leader

from containers import engine, images
from subjects import registry
from subjects.etcd.lab import address_free

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose" / "etcd" / "docker-compose.yml"
MEMBERS = [f"http://127.19.1.{i}:2379" for i in (1, 2, 3)]
PROMETHEUS = "http://127.19.1.200:19090"
# The compose file's addresses are fixed: two test runs on one machine take turns.
LOCK = Path("/tmp/operator-tui-compose-etcd.lock")

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def compose_turn() -> Iterator[None]:
    with open(LOCK, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


async def test_compose_up_is_watched_by_operator_then_down(docker_engine: str) -> None:
    client = engine.connect(docker_engine)
    stale = images.stale(client, ["etcd", "prometheus"])
    if stale:
        print(f"\n[docker tests] building {', '.join(stale)} for compose/etcd (scripts/setup.sh builds them "
              "beforehand)", file=sys.__stderr__, flush=True)
        images.build(client, stale)
    project = f"optui-test-{uuid.uuid4().hex[:6]}"
    label = {"label": f"com.docker.compose.project={project}"}
    with compose_turn():
        taken = [u for u in [*MEMBERS, PROMETHEUS] if not address_free(urlsplit(u).hostname or "", urlsplit(u).port or 0)]
        assert not taken, f"something else listens on the compose file's addresses: {taken}"
        try:
            up = compose(COMPOSE, project, docker_engine, "up", "-d")
            assert up.returncode == 0, up.stderr
            # Operator pointed at the members' client URLs, as `operator-tui --subject etcd --endpoints ...`.
            subject = await registry.build_subject("etcd", {"endpoints": MEMBERS})
            try:
                obs = await healthy(subject, timeout=60)
                assert sorted(n.id for n in obs.nodes) == ["m1", "m2", "m3"]
                assert leader(obs) in {"m1", "m2", "m3"}
                assert sorted(n.role for n in obs.nodes) == ["follower", "follower", "leader"]
                assert subject.thresholds.profile == "production"  # given endpoints: the reference's graces
                assert not [v for inv in subject.invariants() for v in inv.check(obs, [obs])]
            finally:
                await subject.aclose()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                up_targets = [r for r in scraped(PROMETHEUS, 'up{job="etcd"}') if r["value"][1] == "1"]
                if len(up_targets) == 3:
                    break
                time.sleep(1)
            assert len(up_targets) == 3, up_targets
        finally:
            down = compose(COMPOSE, project, docker_engine, "down", "-v", "--remove-orphans")
    assert down.returncode == 0, down.stderr
    try:
        assert client.containers.list(all=True, filters=label) == []
        assert client.volumes.list(filters=label) == []
    finally:
        client.close()
