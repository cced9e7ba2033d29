"""`run_shell` in a container: one throw-away container per command (`shell_sandbox = "docker"`).

The container runs the project's `operator-tui/shell` image (curl, ps, ip, jq, dig on Debian) with a
read-only root, a small private /tmp (tmpfs), every capability dropped, no new privileges, a pid
limit, a memory limit (no swap), one CPU, a cleared environment, its log capped, and it is killed at
the time limit and removed whatever happens. The network is the host's, as with bwrap, so that
read-only diagnostics such as `curl -s http://127.0.0.1:2379/...` work; the command policy and the
approval rules (operator_tui/agent/shell.py) are the same for both sandboxes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

SHELL_IMAGE = "operator-tui/shell:1"
SANDBOX_LABEL = "org.operator-tui.sandbox"
PIDS_LIMIT = 64
MEMORY = "128m"
TMP_SIZE = "16m"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class DockerSandboxUnavailable(RuntimeError):
    pass


def check(address: str | None = None) -> None:
    """Raise DockerSandboxUnavailable unless an engine answers and has the shell image."""
    client = _client(address)
    try:
        _image(client)
    finally:
        client.close()


def _client(address: str | None) -> Any:
    from containers import engine

    try:
        return engine.connect(address, timeout_s=30)
    except engine.EngineError as e:
        raise DockerSandboxUnavailable(f"the docker shell sandbox needs an engine: {e}") from e


def _image(client: Any) -> None:
    import docker

    try:
        client.images.get(SHELL_IMAGE)
    except docker.errors.ImageNotFound as e:
        raise DockerSandboxUnavailable(f"image {SHELL_IMAGE} is missing: build it with "
                                       "`.venv/bin/python -m containers.images build shell`") from e


async def run(command: str, timeout_s: float, max_output: int, address: str | None = None) -> dict[str, Any]:
    """Run `command` with /bin/sh in a fresh container; returns the fields of a ShellResult."""
    return await asyncio.to_thread(_run, command, timeout_s, max_output, address)


def _run(command: str, timeout_s: float, max_output: int, address: str | None) -> dict[str, Any]:
    import docker
    import requests

    client = _client(address)
    container = None
    t0 = time.monotonic()
    try:
        _image(client)
        container = client.containers.create(
            SHELL_IMAGE, ["/bin/sh", "-c", command], read_only=True, tmpfs={"/tmp": f"size={TMP_SIZE},mode=1777"},
            cap_drop=["ALL"], security_opt=["no-new-privileges"], pids_limit=PIDS_LIMIT, mem_limit=MEMORY,
            memswap_limit=MEMORY, nano_cpus=1_000_000_000, network_mode="host", working_dir="/tmp",
            environment={"PATH": PATH, "HOME": "/tmp", "LANG": "C.UTF-8"}, labels={SANDBOX_LABEL: "shell"},
            init=True, log_config={"type": "json-file", "config": {"max-size": "1m", "max-file": "1"}},
        )
        container.start()
        timed_out = False
        try:
            exit_code: int | None = int(container.wait(timeout=timeout_s)["StatusCode"])
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            timed_out, exit_code = True, None
            container.kill()
        out = container.logs(stdout=True, stderr=False)
        err = container.logs(stdout=False, stderr=True)
        return {"exit_code": exit_code, "stdout": out[:max_output].decode("utf-8", "replace"),
                "stderr": err[:max_output].decode("utf-8", "replace"),
                "truncated": len(out) > max_output or len(err) > max_output, "timed_out": timed_out,
                "duration_ms": round((time.monotonic() - t0) * 1000, 1)}
    except docker.errors.DockerException as e:
        raise DockerSandboxUnavailable(f"the docker shell sandbox failed: {e}") from e
    finally:
        if container is not None:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
        client.close()
