"""The real local Docker engine for the Docker tests: started once per session through
`scripts/dockerd.sh` (and stopped at the end if this session started it), with the project's images.

When the engine cannot start, every Docker test fails with the reason: none is skipped. Images are
built by scripts/setup.sh; a session that finds one missing or out of date builds it and says so.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from containers import engine, images

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ratelimiter"))  # rl_support, rl_subject_support
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))  # rl_eval_support
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "etcd"))  # etcd_support
from docker_support import assert_etcd_lab_gone, assert_lab_gone


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[str]:
    """The local engine's address (DOCKER_HOST is ignored: tests use the project's own engine)."""
    saved = engine.os.environ.pop("DOCKER_HOST", None)
    started = False
    try:
        if not engine.answers(engine.local_host()):
            engine.start_local()  # raises EngineError with the script's reason: the tests fail
            started = True
        yield engine.local_host()
    finally:
        if started:
            engine.stop_local()
        if saved is not None:
            engine.os.environ["DOCKER_HOST"] = saved


@pytest.fixture(scope="session")
def docker_client(docker_engine: str) -> Iterator[Any]:
    client = engine.connect(docker_engine)
    stale = images.stale(client)
    if stale:
        print(f"\n[docker tests] building images missing from the cache: {', '.join(stale)} "
              "(scripts/setup.sh builds them beforehand)", file=sys.__stderr__, flush=True)
        images.build(client, stale, progress=lambda line: print(f"[docker tests] {line}", file=sys.__stderr__,
                                                                 flush=True))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def docker_lab(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One 3-node Docker rate limiter lab (no load generator) for the chaos and agent tests;
    removed at the end, and checked gone in the engine's own listing."""
    from rl_subject_support import LAB_NODES
    from rl_support import free_lab_ports

    from containers import nodes
    from subjects.ratelimiter.docker_lab import DockerRateLimiterLab

    lab = DockerRateLimiterLab(tmp_path_factory.mktemp("docker-lab"))
    redis_port, base = free_lab_ports(3)
    try:
        lab.up(nodes=3, redis_port=redis_port, base_port=base, load=False, node_options=LAB_NODES)
        yield lab
    finally:
        try:
            if lab.state_path.exists():
                lab.down()
        finally:
            nodes.remove_lab(docker_client, lab.run_dir)  # whatever happened above, nothing outlives the session
        assert_lab_gone(docker_client, lab.run_dir)


@pytest.fixture(scope="session")
def docker_etcd_lab(docker_engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One 3-member Docker etcd lab (no load generator) for the etcd chaos and agent tests, on an
    address block of its own; removed at the end and proven gone (the engine's listing included).
    It needs only the etcd image, which `up` builds when it is missing."""
    from etcd_support import free_block

    from subjects.etcd.docker_lab import DockerEtcdLab

    lab = DockerEtcdLab(tmp_path_factory.mktemp("docker-etcd"))
    block, client, peer = free_block()
    state = None
    try:
        state = lab.up(members=3, block=block, client_port=client, peer_port=peer, load=False)
        yield lab
    finally:
        assert_etcd_lab_gone(lab, state or lab._read())
