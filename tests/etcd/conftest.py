"""The etcd tests run real Debian etcd members (etcd-server) on address blocks of their own.

Each module defines its own module-scoped `lab` (with or without load); `subject` watches it for one
test and checks the lab is healthy before and after, with no fault left behind."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest
from etcd_support import healthy, subject_for

from subjects.etcd.client import EtcdClient
from subjects.etcd.lab import EtcdLab
from subjects.etcd.subject import EtcdSubject

if shutil.which("etcd") is None or shutil.which("etcdctl") is None:  # a missing etcd fails the run, never skips
    raise RuntimeError("etcd is not installed: run scripts/setup.sh (Debian packages etcd-server and etcd-client)")


@pytest.fixture
async def subject(lab: EtcdLab) -> AsyncIterator[EtcdSubject]:
    s = await subject_for(lab)  # the lab profile: the graces an SRE would use on this lab
    try:
        await healthy(s)
        yield s
        await healthy(s)
        state = lab.state
        assert not state.chains, f"partitions left: {state.chains}"
        assert set(state.processes) <= {m.name for m in state.members} | {"loadgen"}, state.processes
    finally:
        await s.aclose()


@pytest.fixture
async def client() -> AsyncIterator[EtcdClient]:
    c = EtcdClient(timeout=10.0)
    try:
        yield c
    finally:
        await c.aclose()
