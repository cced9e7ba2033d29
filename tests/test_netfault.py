"""Partitions by cgroup and address: a DROP cuts exactly the traffic it names, counts what it
dropped, and leaves no chain, jump or cgroup behind."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid

import pytest

from subjects.netfault import Chain, NetFaultError, cgroup_create, cgroup_join, cgroup_remove

CONNECT = ("import socket, sys\nc = socket.socket(); c.settimeout(1.0)\n"
           "try:\n    c.connect((sys.argv[1], int(sys.argv[2]))); print('connected')\n"
           "except OSError as e:\n    print('failed', type(e).__name__)\n")


def connect(host: str, port: int, cgroup: str | None = None) -> str:
    result = subprocess.run([sys.executable, "-c", CONNECT, host, str(port)], capture_output=True, text=True,
                            preexec_fn=cgroup_join(cgroup) if cgroup else None, timeout=20)
    return result.stdout.strip()


@pytest.fixture
def listener() -> tuple[str, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.57", 0))
        s.listen(16)
        yield s.getsockname()


def test_a_partition_cuts_one_cgroup_from_one_address_and_is_removed_whole(listener: tuple[str, int]) -> None:
    host, port = listener
    tag = uuid.uuid4().hex[:8]
    cut, other = f"operator-tui-test/{tag}/cut", f"operator-tui-test/{tag}/other"
    chain = Chain(f"OPTEST{tag}")
    cgroup_create(cut)
    cgroup_create(other)
    try:
        assert connect(host, port, cut) == "connected"
        chain.create()
        rule = chain.drop(dst=host, cgroup=cut)
        assert "--path" in rule
        assert chain.rules() and chain.hooked()
        assert connect(host, port, cut) == "failed TimeoutError"
        assert connect(host, port, other) == "connected"  # another cgroup still gets through
        assert connect(host, port) == "connected"  # and so does the observer
        assert chain.packets() > 0  # the effect check: the rule really dropped packets
        chain.create()  # idempotent: no second jump
        assert len([r for r in subprocess.run(["iptables", "-S", "OUTPUT"], capture_output=True,
                                              text=True).stdout.splitlines() if chain.name in r]) == 1
    finally:
        chain.delete()
        chain.delete()  # idempotent
        assert cgroup_remove(f"operator-tui-test/{tag}")
    assert chain.gone()
    assert connect(host, port, None) == "connected"


def test_bad_names_and_empty_rules_are_refused() -> None:
    with pytest.raises(NetFaultError):
        Chain("has space")
    with pytest.raises(NetFaultError):
        Chain("X" * 40)
    chain = Chain(f"OPTEST{uuid.uuid4().hex[:8]}")
    chain.create()
    try:
        with pytest.raises(NetFaultError, match="matches everything"):
            chain.drop()
    finally:
        chain.delete()
    assert chain.gone()
