"""Benchmark the PD-compatible simulator at scale (default 1,000 stores, 100,000 regions).

Starts `operator-tui sim tikv` as a subprocess, then reports: startup time (process start to the
"listening" line), median and p95 wall time to fetch /stores, /regions, /regions/check/down-peer and
one store's /metrics over real HTTP (bytes read raw, so the figures are the server's), and the
simulator's resident memory. Once the baseline is
measured it kills one store and waits until its peers show as down (10 simulated minutes), so the
down-peer list is measured non-empty too.

    .venv/bin/python bench/bench_sim.py [--stores 1000 --regions 100000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^PD API listening on (http://\S+) ")
PD = "/pd/api/v1"


def cli() -> list[str]:
    script = Path(sys.executable).with_name("operator-tui")
    return [str(script)] if script.exists() else [sys.executable, "-m", "operator_tui"]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def timed(client: httpx.Client, url: str, runs: int) -> dict[str, Any]:
    samples = []
    size = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        with client.stream("GET", url) as r:
            size = sum(len(chunk) for chunk in r.iter_raw(1 << 20))  # raw bytes: measure the server
        samples.append(time.perf_counter() - t0)
        r.raise_for_status()
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return {"median_ms": statistics.median(samples) * 1000, "p95_ms": p95 * 1000, "bytes": size, "runs": runs}


def wait_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sel.select(max(0.0, deadline - time.monotonic())):
                line = proc.stdout.readline()
                if not line:
                    break
                return line.rstrip("\n")
        raise RuntimeError(f"the simulator did not start within {timeout:g}s")
    finally:
        sel.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        *cli(),
        "sim",
        "tikv",
        "--port",
        "0",
        "--stores",
        str(args.stores),
        "--regions",
        str(args.regions),
        "--time-scale",
        str(args.time_scale),
        "--seed",
        "1",
        "--log-level",
        "warning",
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = wait_line(proc, timeout=300)
        startup = time.perf_counter() - t0
        m = LINE.match(line)
        if not m:
            raise RuntimeError(f"unexpected first line: {line!r}")
        url = m.group(1)
        assert proc.stdout is not None
        admin_line = proc.stdout.readline()  # printed with the first: the admin API (faults)
        admin_url = admin_line.rsplit(" on ", 1)[1].split()[0]
        results: dict[str, Any] = {
            "stores": args.stores,
            "regions": args.regions,
            "time_scale": args.time_scale,
            "startup_s": startup,
            "endpoints": {},
        }
        with httpx.Client(base_url=url, timeout=300) as client:
            status_address = client.get(f"{PD}/store/1").json()["store"]["status_address"]
            endpoints = results["endpoints"]
            endpoints["/regions (first request)"] = timed(client, f"{PD}/regions", 1)
            endpoints["/stores"] = timed(client, f"{PD}/stores", args.runs)
            endpoints["/regions"] = timed(client, f"{PD}/regions", max(5, args.runs // 2))
            endpoints["/regions/check/down-peer (empty)"] = timed(
                client, f"{PD}/regions/check/down-peer", args.runs
            )
            endpoints["store /metrics"] = timed(client, f"http://{status_address}/metrics", args.runs)
            endpoints["PD /metrics"] = timed(client, "/metrics", args.runs)
            results["rss_mib"] = rss_mib(proc.pid)
            # a dead store: its peers turn into down peers after 10 simulated minutes
            client.post(f"{admin_url}/sim/v1/faults", json={"kind": "kill_store", "store_id": 2}).raise_for_status()
            deadline = time.monotonic() + 600.0 / args.time_scale + 60
            down = 0
            while time.monotonic() < deadline:
                down = client.get(f"{PD}/regions/check/down-peer").json()["count"]
                if down:
                    break
                time.sleep(0.5)
            label = f"/regions/check/down-peer ({down} regions)"
            endpoints[label] = timed(client, f"{PD}/regions/check/down-peer", args.runs)
            results["rss_mib_end"] = rss_mib(proc.pid)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        results["exit_code"] = proc.returncode
        return results
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=60)


def table(results: dict[str, Any]) -> str:
    lines = [
        f"simulator: {results['stores']} stores, {results['regions']} regions, time-scale {results['time_scale']:g}",
        f"startup (process start to listening): {results['startup_s']:.2f} s",
        "",
        f"{'endpoint':<44} {'median ms':>10} {'p95 ms':>10} {'bytes':>12} {'runs':>5}",
        "-" * 85,
    ]
    for name, r in results["endpoints"].items():
        lines.append(
            f"{name:<44} {r['median_ms']:>10.1f} {r['p95_ms']:>10.1f} {r['bytes']:>12} {r['runs']:>5}"
        )
    lines.append("")
    lines.append(
        f"simulator RSS: {results['rss_mib']:.0f} MiB after the baseline, {results['rss_mib_end']:.0f} MiB at the end"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the PD-compatible TiKV simulator.")
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--regions", type=int, default=100_000)
    parser.add_argument("--time-scale", type=float, default=60.0, help="simulated seconds per wall second")
    parser.add_argument("--runs", type=int, default=20, help="requests per endpoint")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.stores < 3 or args.regions < 1 or args.runs < 1 or args.time_scale <= 0:
        parser.error("need --stores >= 3, --regions >= 1, --runs >= 1 and a positive --time-scale")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    results = run(args)
    print(json.dumps(results, indent=2) if args.json else table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
