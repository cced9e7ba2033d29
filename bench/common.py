"""Helpers shared by the benchmarks: a simulator in its own process, RSS, percentiles."""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def sim_process(stores: int, regions: int, time_scale: float = 1.0, seed: int = 0) -> Iterator[str]:
    """`operator-tui sim tikv` as a separate process (its own core), yielding the PD URL."""
    proc = subprocess.Popen([sys.executable, "-m", "operator_tui", "sim", "tikv", "--port", "0", "--stores",
                             str(stores), "--regions", str(regions), "--time-scale", str(time_scale), "--seed",
                             str(seed), "--log-level", "warning"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if "listening on " not in line:
            raise RuntimeError(f"simulator did not start: {line!r}")
        yield line.split("listening on ", 1)[1].split()[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median": round(statistics.median(ordered), 1), "p95": round(p95, 1), "min": round(ordered[0], 1)}


def table(headers: list[str], rows: list[list[object]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(str(h).ljust(widths[i]) for i, h in enumerate(headers))]
    lines += ["  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)) for r in rows]
    return "\n".join(lines)
