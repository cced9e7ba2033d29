"""Fixtures for the rate limiter: real redis-server and real node processes on loopback.

Ports are chosen free at test time; every process a fixture starts is stopped at teardown and
checked gone (or a zombie awaiting its reaper: dead either way).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest
from rl_support import assert_dead, assert_ports_closed, free_port, make_lab, teardown_lab

from subjects import processes
from subjects.ratelimiter.lab import RateLimiterLab

if shutil.which("redis-server") is None:  # a missing server must fail the run, not skip it green
    raise RuntimeError("redis-server is not installed: run scripts/setup.sh (Debian package redis-server)")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> Iterator[str]:
    """A bare redis-server on a free port; yields its URL."""
    tmp = tmp_path_factory.mktemp("redis")
    port = free_port()
    rec = processes.spawn(
        "redis",
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        tmp / "redis.log",
        port=port,
    )
    try:
        assert processes.wait_port(port, 20.0, alive=rec), processes.log_tail(rec.log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        processes.stop(rec)
        assert_dead([rec])
        assert_ports_closed([port])


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[RateLimiterLab]:
    """A 3-node lab without load, shared by a module; tests leave it as they found it."""
    lab = make_lab(tmp_path_factory.mktemp("lab"))
    try:
        yield lab
    finally:
        teardown_lab(lab)


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as client:
        yield client
