"""A lean parser for the Prometheus text exposition format.

Scraping hundreds of stores a second means parsing only the families we use: lines of other
metrics are skipped by name before any label is looked at.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Sample = tuple[str, dict[str, str], float]


class ParseError(ValueError):
    pass


def parse(text: str, wanted: Iterable[str] | None = None) -> list[Sample]:
    """Samples as (name, labels, value). `wanted` keeps only those names (histogram series
    `_bucket`/`_sum`/`_count` included when their family is wanted)."""
    keep = None
    if wanted is not None:
        keep = set()
        for w in wanted:
            keep.update((w, f"{w}_bucket", f"{w}_sum", f"{w}_count", f"{w}_total"))
    out: list[Sample] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] == "#":
            continue
        brace = line.find("{")
        space = line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            name = line[:brace]
            end = line.rfind("}")
            if end < brace:
                raise ParseError(f"line {lineno}: unbalanced braces: {line[:80]!r}")
            if keep is not None and name not in keep:
                continue
            labels = {k: v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                      for k, v in LABEL.findall(line[brace + 1:end])}
            rest = line[end + 1:].split()
        else:
            if space == -1:
                raise ParseError(f"line {lineno}: no value: {line[:80]!r}")
            name = line[:space]
            if keep is not None and name not in keep:
                continue
            labels = {}
            rest = line[space + 1:].split()
        if not rest:
            raise ParseError(f"line {lineno}: no value: {line[:80]!r}")
        try:
            value = float(rest[0])
        except ValueError as e:
            raise ParseError(f"line {lineno}: bad value {rest[0]!r}") from e
        out.append((name, labels, value))
    return out


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Quantile from cumulative bucket counts {upper bound: count}, interpolating linearly inside
    the bucket as Prometheus does. None when there were no observations."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        count = buckets[b]
        if count >= rank:
            if math.isinf(b):
                return prev_bound  # the answer lies beyond the last finite bound
            if count == prev_count:
                return b
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = b, count
    return bounds[-2] if len(bounds) > 1 else None
