"""Reliability campaign: property-based fuzzing of every parser of outside data, at length.

The properties live in tests/fuzz/properties.py (the test suite runs them with a few dozen
examples each); here each runs with thousands: PD's JSON (omitted, odd, wrong-typed fields, error
statuses, bodies that are not JSON) through a real HTTP "PD" into the TiKV observation and every
invariant; Prometheus text; a rate limiter node's /api/stats and /metrics; config files. A property
holds when every input gets a clear error or a faithful result: never a crash, never a silent
all-clear. Campaign and chapter YAML are fuzzed once their parsers land (other branches).

    .venv/bin/python bench/campaign_fuzz.py [--examples 2000] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import table

ROOT = Path(__file__).resolve().parent.parent

PROPERTIES = {
    "test_tikv_observation_of_any_pd_answer": "PD JSON -> TiKV observation -> invariants",
    "test_prometheus_text": "Prometheus text (stores, PD, rate limiter)",
    "test_ratelimiter_node_bodies": "rate limiter /api/stats and /metrics",
    "test_config_files": "config files (TOML)",
}


class Collector:
    def __init__(self) -> None:
        self.results: dict[str, dict[str, Any]] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when != "call":
            return
        name = report.nodeid.rsplit("::", 1)[-1]
        failure = None
        if report.failed:
            text = str(report.longrepr)
            failure = next((line for line in text.splitlines() if line.startswith("E ")), text[-300:])
        self.results[name] = {"passed": report.passed, "seconds": round(report.duration, 1), "failure": failure}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=2000, help="examples per property (default: 2000)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ["FUZZ_EXAMPLES"] = str(args.examples)
    import pytest

    collector = Collector()
    started = time.monotonic()
    with contextlib.redirect_stdout(sys.stderr):  # pytest's own report: progress, not the figures
        pytest.main([str(ROOT / "tests" / "fuzz"), "-q", "-p", "no:cacheprovider", "--timeout", "0", "--no-header",
                     "-o", "addopts="], plugins=[collector])
    rows = [{"property": PROPERTIES.get(name, name), "examples": args.examples, **result}
            for name, result in collector.results.items()]
    if args.json:
        print(json.dumps({"examples_per_property": args.examples, "results": rows,
                          "elapsed_s": round(time.monotonic() - started)}, indent=2))
    else:
        print(table(["parser", "examples", "holds", "seconds", "first failure"],
                    [[r["property"], r["examples"], r["passed"], r["seconds"], r["failure"] or "-"] for r in rows]))
    return 0 if rows and all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
