"""Docker against processes, on the same machine in one run: engine start, lab up and down and a node
(member) kill to answering again (restart) for the rate limiter and etcd labs, and one sandboxed
shell command (docker vs bwrap).

Uses the project's local engine (started and stopped here if it does not run) and its images
(built by scripts/setup.sh). Compare the ratios, not the absolute times: machines are shared.

    .venv/bin/python bench/bench_docker.py [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import summary, table
from containers import engine
from operator_tui.agent.shell import Shell
from subjects.etcd.docker_lab import DockerEtcdLab
from subjects.etcd.lab import EtcdLab, address_free
from subjects.processes import port_free
from subjects.ratelimiter.docker_lab import DockerRateLimiterLab
from subjects.ratelimiter.lab import RateLimiterLab


def free_ports() -> tuple[int, int]:
    for base in range(24000, 31000, 300):
        if all(port_free(p) for p in (base - 1, *range(base + 1, base + 4), *range(base + 100, base + 104))):
            return base - 1, base
    raise RuntimeError("no free ports")


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t0) * 1000


def lab_rounds(cls: type[RateLimiterLab], rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"up": [], "kill -> answering": [], "down": []}
    for _ in range(rounds):
        folder = Path(tempfile.mkdtemp(prefix="operator-bench-docker-"))
        lab = cls(folder)
        redis_port, base = free_ports()
        try:
            out["up"].append(timed(lambda lab=lab, r=redis_port, b=base: lab.up(nodes=3, redis_port=r, base_port=b,
                                                                                 load=False)))
            lab.kill_node("n2")
            out["kill -> answering"].append(timed(lab.start_node, "n2"))
        finally:
            out["down"].append(timed(lab.down))
            shutil.rmtree(folder, ignore_errors=True)
    return out


def free_block() -> tuple[str, int, int]:
    """An address block 127.90.Y nobody listens on, with a client and a peer port."""
    for y in range(0, 250):
        block = f"127.90.{y}"
        if all(address_free(f"{block}.{i}", p) for i in (1, 2, 3) for p in (24790, 24800)):
            return block, 24790, 24800
    raise RuntimeError("no free address block")


def etcd_rounds(cls: type[EtcdLab], rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"up": [], "kill -> answering": [], "down": []}
    for _ in range(rounds):
        folder = Path(tempfile.mkdtemp(prefix="operator-bench-docker-etcd-"))
        lab = cls(folder)
        block, client, peer = free_block()
        try:
            out["up"].append(timed(functools.partial(lab.up, members=3, block=block, client_port=client,
                                                     peer_port=peer, load=False)))
            lab.kill_member("m2")
            out["kill -> answering"].append(timed(lab.start_member, "m2"))
        finally:
            out["down"].append(timed(lab.down))
            lab.close()
            shutil.rmtree(folder, ignore_errors=True)
    return out


def shell_rounds(sandbox: str, rounds: int) -> list[float]:
    shell = Shell(sandbox=sandbox)
    values = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        result = asyncio.run(shell.run("ps -e | wc -l"))
        values.append((time.perf_counter() - t0) * 1000)
        assert result.exit_code == 0, result.stderr
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.pop("DOCKER_HOST", None)
    started_here = False
    if not engine.answers():
        folder = Path(f"/var/lib/operator-tui/docker-bench-{uuid.uuid4().hex[:6]}")
        env = {**os.environ, engine.DIR_ENV: str(folder)}
        start = timed(lambda: subprocess.run(["bash", str(engine.SCRIPT), "start"], env=env, check=True,
                                             capture_output=True))
        subprocess.run(["bash", str(engine.SCRIPT), "stop"], env=env, check=True, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
        engine.start_local()
        started_here = True
    else:
        start = float("nan")
    try:
        results = {"engine start (empty data root) ms": start,
                   "process lab": {k: summary(v) for k, v in lab_rounds(RateLimiterLab, args.rounds).items()},
                   "docker lab": {k: summary(v) for k, v in lab_rounds(DockerRateLimiterLab, args.rounds).items()},
                   "etcd process lab": {k: summary(v) for k, v in etcd_rounds(EtcdLab, args.rounds).items()},
                   "etcd docker lab": {k: summary(v) for k, v in etcd_rounds(DockerEtcdLab, args.rounds).items()},
                   "shell bwrap": summary(shell_rounds("bwrap", args.rounds * 3)),
                   "shell docker": summary(shell_rounds("docker", args.rounds * 3))}
    finally:
        if started_here:
            engine.stop_local()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"engine start (empty data root): {start:.0f} ms")
    rows = []
    for step in ("up", "kill -> answering", "down"):
        p, d = results["process lab"][step], results["docker lab"][step]
        rows.append([f"lab {step}", p["median"], d["median"], round(d["median"] / p["median"], 1)])
    for step in ("up", "kill -> answering", "down"):
        p, d = results["etcd process lab"][step], results["etcd docker lab"][step]
        rows.append([f"etcd lab {step}", p["median"], d["median"], round(d["median"] / p["median"], 1)])
    b, d = results["shell bwrap"], results["shell docker"]
    rows.append(["one shell command", b["median"], d["median"], round(d["median"] / b["median"], 1)])
    print(table(["median ms", "process/bwrap", "docker", "ratio"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
