"""Which Docker engine to talk to, and the project's own local engine (`scripts/dockerd.sh`).

`DOCKER_HOST` selects an engine (a Docker already running on the machine, or a remote one); without
it, the local engine's socket under `$OPERATOR_TUI_DOCKER_DIR` (default
/var/lib/operator-tui/docker). The local engine is started and stopped only by the script, which
records its pid and start time and unmounts what it leaves.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = PROJECT_ROOT / "scripts" / "dockerd.sh"
DIR_ENV = "OPERATOR_TUI_DOCKER_DIR"
DEFAULT_DIR = Path("/var/lib/operator-tui/docker")
LABEL = "org.operator-tui"  # prefix of every label the project puts on images and containers
SCRIPT_TIMEOUT_S = 120.0


class EngineError(Exception):
    """No engine answers, or the local one cannot start: one line a user can act on."""


def local_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


def local_host() -> str:
    return f"unix://{local_dir() / 'docker.sock'}"


def host() -> str:
    """The engine in use: DOCKER_HOST when set, else the local engine's socket."""
    return os.environ.get("DOCKER_HOST") or local_host()


def is_local(address: str) -> bool:
    return address == local_host()


def _hint(address: str) -> str:
    if is_local(address):
        return f"start the local engine with `{SCRIPT.relative_to(PROJECT_ROOT)} start`"
    return "check DOCKER_HOST (unset it to use the project's local engine)"


def connect(address: str | None = None, timeout_s: float = 60.0) -> Any:
    """A `docker.DockerClient` for `address` (default: `host()`) that answered a ping."""
    import docker
    import requests

    address = address or host()
    try:
        client = docker.DockerClient(base_url=address, timeout=int(timeout_s))
        client.ping()
    except (docker.errors.DockerException, requests.RequestException, OSError) as e:
        raise EngineError(f"no Docker engine answers at {address}: {_short(e)}; {_hint(address)}") from e
    return client


def answers(address: str | None = None) -> bool:
    try:
        connect(address, timeout_s=5.0).close()
    except EngineError:
        return False
    return True


def _script(command: str) -> str:
    if not SCRIPT.exists():
        raise EngineError(f"{SCRIPT} is missing: the local engine is started from a checkout of the project")
    try:
        done = subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True,
                              timeout=SCRIPT_TIMEOUT_S, env={**os.environ, DIR_ENV: str(local_dir())})
    except subprocess.TimeoutExpired as e:
        raise EngineError(f"{SCRIPT.name} {command} took more than {SCRIPT_TIMEOUT_S:.0f}s") from e
    out = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise EngineError(f"{SCRIPT.name} {command} failed: {out.splitlines()[-1] if out else done.returncode}")
    return out


def start_local() -> str:
    return _script("start")


def stop_local() -> str:
    return _script("stop")


def ensure() -> tuple[str, bool]:
    """The engine to use and whether this call started it. With DOCKER_HOST set that engine must
    answer (nothing is started); otherwise the local engine is started when it does not run."""
    address = host()
    if not is_local(address) or answers(address):
        connect(address).close()
        return address, False
    start_local()
    connect(address).close()
    return address, True


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]
