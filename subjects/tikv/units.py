"""PD renders byte sizes as human strings (docker/go-units BytesSize): "311.7GiB", "1B", old "197 GiB"."""

from __future__ import annotations

import re

UNITS = {"B": 1, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4, "PIB": 1024**5, "EIB": 1024**6,
         "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4, "PB": 1000**5}
SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")
DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_bytes(value: str | int | float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    m = SIZE.match(value)
    if not m:
        return None
    unit = (m.group(2) or "B").upper()
    if unit not in UNITS:
        return None
    return float(m.group(1)) * UNITS[unit]


def parse_duration(value: str | int | float | None) -> float | None:
    """Go duration string ("30m0s", "1h", "1.5s") to seconds."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None  # PD sent something that is not a duration: unknown, not zero
    text = value.strip()
    if text in ("0", ""):
        return 0.0
    total, pos = 0.0, 0
    for m in DURATION_PART.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * DURATION_UNITS[m.group(2)]
        pos = m.end()
    return total if pos == len(text) else None
