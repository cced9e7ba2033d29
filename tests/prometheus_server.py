"""A real `prometheus` (Debian package) on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    """A free port below the kernel's ephemeral range (32768-60999), so that no client socket or
    port-0 bind elsewhere in the run can take it before prometheus binds it."""
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(20_000, 32_000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


@contextlib.contextmanager
def prometheus(config_text: str, ready_timeout: float = 60.0, *, web_config: str | None = None,
               client: tuple[str, str, str] | None = None) -> Iterator[str]:
    """`web_config`: Prometheus's --web.config.file (e.g. tls_server_config: it then serves
    HTTPS); `client`: (CA, certificate, key) to check its readiness with."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed: run scripts/setup.sh (Debian package prometheus)")
    with tempfile.TemporaryDirectory(prefix="operator-prom-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(config_text)
        port = free_port()
        args = [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
                f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
        if web_config is not None:
            (Path(tmp) / "web.yml").write_text(web_config)
            args.append(f"--web.config.file={Path(tmp) / 'web.yml'}")
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(Path(tmp) / "prometheus.log", "wb"))
        url = f"{'https' if web_config and 'tls_server_config' in web_config else 'http'}://127.0.0.1:{port}"
        verify: Any = True
        if client is not None:
            verify = ssl.create_default_context(cafile=client[0])
            verify.load_cert_chain(client[1], client[2])
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"prometheus exited: {(Path(tmp) / 'prometheus.log').read_text()[-500:]}")
                try:
                    if httpx.get(f"{url}/-/ready", timeout=1, verify=verify).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("prometheus did not become ready")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
