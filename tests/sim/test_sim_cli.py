"""`operator-tui sim tikv` as a real subprocess."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

CLI = Path(sys.executable).with_name("operator-tui")
LINE = re.compile(
    r"^PD API listening on (http://127\.0\.0\.1:(\d+)) \((\d+) stores, (\d+) regions, time-scale (\S+)\)$"
)


def command(*args: str) -> list[str]:
    base = [str(CLI)] if CLI.exists() else [sys.executable, "-m", "operator_tui"]
    return [*base, "sim", "tikv", *args]


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            raise AssertionError(f"no output within {timeout}s")
        return proc.stdout.readline().rstrip("\n")
    finally:
        sel.close()


@pytest.fixture
def spawn():
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_serves_until_sigterm_then_exits_zero(spawn) -> None:
    proc = spawn("--port", "0", "--stores", "3", "--regions", "30", "--time-scale", "50", "--seed", "3")
    line = read_line(proc, timeout=60)
    m = LINE.match(line)
    assert m, line
    url = m.group(1)
    assert (m.group(3), m.group(4), m.group(5)) == ("3", "30", "50")
    stores = httpx.get(f"{url}/pd/api/v1/stores", timeout=10).json()
    assert stores["count"] == 3
    address = stores["stores"][0]["store"]["status_address"]
    assert httpx.get(f"http://{address}/metrics", timeout=10).status_code == 200
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/pd/api/v1/ping", timeout=2)


def test_sigint_also_exits_zero(spawn) -> None:
    proc = spawn("--port", "0", "--stores", "1", "--regions", "5", "--replicas", "1")
    assert LINE.match(read_line(proc, timeout=60))
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stores", "0"], "--stores must be at least 1"),
        (["--replicas", "9"], "--replicas must be between 1 and --stores (5)"),
        (["--time-scale", "-1"], "--time-scale must be positive"),
        (["--port", "70000"], "--port must be between 0 and 65535"),
    ],
)
def test_bad_flags_are_one_line_errors(spawn, args: list[str], message: str) -> None:
    proc = spawn(*args)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert out == ""
    assert err.strip() == f"operator-tui: error: {message}"


def test_port_in_use_is_a_clean_error(spawn) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    try:
        proc = spawn(
            "--port", str(blocker.getsockname()[1]), "--stores", "1", "--regions", "2", "--replicas", "1"
        )
        _, err = proc.communicate(timeout=60)
    finally:
        blocker.close()
    assert proc.returncode == 2
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    assert lines[-1].startswith("operator-tui: error: cannot start the simulator on 127.0.0.1:")
