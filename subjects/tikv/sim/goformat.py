"""How Go renders durations, times, byte sizes, floats and JSON, so that PD's answers look like PD's.

Clients parse these strings (pd-ctl, TiUP, our own subject), so the simulator must produce exactly
the same text a Go program would, not Python's defaults.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

NS = 1_000_000_000

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([a-zµμ]*)")


def parse_go_duration(text: str) -> float:
    """Go's time.ParseDuration, returning seconds; raises ValueError with Go's message."""
    orig = text
    if not isinstance(text, str):
        raise ValueError(f"time: invalid duration {json.dumps(str(text))}")
    sign = 1.0
    if text[:1] in "+-" and text:
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(f"time: invalid duration {json.dumps(orig)}")
    total = 0.0
    pos = 0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        number, unit = (m.group(1), m.group(2)) if m else ("", "")
        if not number or number == ".":
            raise ValueError(f"time: invalid duration {json.dumps(orig)}")
        if not unit:
            raise ValueError(f"time: missing unit in duration {json.dumps(orig)}")
        if unit not in _UNITS:
            raise ValueError(f"time: unknown unit {json.dumps(unit)} in duration {json.dumps(orig)}")
        total += float(number) * _UNITS[unit]
        pos = m.end()
    return sign * total


def _fraction(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{str(frac).rjust(digits, '0').rstrip('0')}"


def go_duration_ns(ns: int) -> str:
    """Go's time.Duration.String for a count of nanoseconds."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < NS:
        if u < 1_000:
            return f"{sign}{u}ns"
        if u < 1_000_000:
            return f"{sign}{_fraction(u, 1_000)}µs"
        return f"{sign}{_fraction(u, 1_000_000)}ms"
    hours, rem = divmod(u, 3600 * NS)
    minutes, rem = divmod(rem, 60 * NS)
    out = f"{_fraction(rem, NS)}s"
    if hours or minutes:
        out = f"{minutes}m{out}"
    if hours:
        out = f"{hours}h{out}"
    return sign + out


def go_duration(seconds: float) -> str:
    return go_duration_ns(round(seconds * NS))


def to_ns(seconds: float) -> int:
    return round(seconds * NS)


def _utc(ns: int) -> tuple[datetime, int]:
    secs, frac = divmod(ns, NS)
    return datetime.fromtimestamp(secs, tz=UTC), frac


def rfc3339nano(ns: int) -> str:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction trimmed, no fraction if zero."""
    dt, frac = _utc(ns)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        base += "." + str(frac).rjust(9, "0").rstrip("0")
    return base + "Z"


def go_time_string(ns: int | None, mono_ns: int | None = None) -> str:
    """Go's time.Time.String(): `2025-01-09 08:31:45.749305225 +0000 UTC m=+110.335827093`."""
    if ns is None:
        return "0001-01-01 00:00:00 +0000 UTC"
    dt, frac = _utc(ns)
    out = dt.strftime("%Y-%m-%d %H:%M:%S")
    if frac:
        out += "." + str(frac).rjust(9, "0").rstrip("0")
    out += " +0000 UTC"
    if mono_ns is not None:
        sign = "+" if mono_ns >= 0 else "-"
        whole, rest = divmod(abs(mono_ns), NS)
        out += f" m={sign}{whole}.{rest:09d}"
    return out


_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def bytes_size(n: float) -> str:
    """docker/go-units BytesSize: `%.4g` and a binary unit, e.g. "311.7GiB", "1B"."""
    size = float(n)
    i = 0
    while size >= 1024.0 and i < len(_SIZE_UNITS) - 1:
        size /= 1024.0
        i += 1
    return f"{size:.4g}{_SIZE_UNITS[i]}"


def go_float(x: float) -> str:
    """strconv.FormatFloat(x, 'g', -1, 64), as the Prometheus Go client writes sample values."""
    if isinstance(x, int) and -1_000_000 < x < 1_000_000:
        return str(x)  # the common case, and exactly what %g gives for it
    x = float(x)
    if x.is_integer() and -1e6 < x < 1e6 and x != 0:
        return str(int(x))
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "0"
    if 1e-4 <= abs(x) < 1e6:
        return repr(x)  # Python's shortest repr is Go's here; they differ only in exponent thresholds
    d = Decimal(repr(x))
    sign, digits, exponent = d.as_tuple()
    digs = "".join(map(str, digits)).rstrip("0") or "0"
    exp10 = len(digits) + exponent - 1  # decimal exponent of the first digit
    neg = "-" if sign else ""
    # With the shortest precision ('g', -1) Go switches to %e below 1e-4 and from 1e6 up.
    if exp10 < -4 or exp10 >= 6:
        mant = digs[0] + ("." + digs[1:] if len(digs) > 1 else "")
        esign = "+" if exp10 >= 0 else "-"
        return f"{neg}{mant}e{esign}{abs(exp10):02d}"
    if exp10 < 0:
        return f"{neg}0.{'0' * (-exp10 - 1)}{digs}"
    if len(digs) <= exp10 + 1:
        return neg + digs + "0" * (exp10 + 1 - len(digs))
    return f"{neg}{digs[: exp10 + 1]}.{digs[exp10 + 1 :]}"


def num(x: float) -> float | int:
    """A float as Go's encoding/json prints it: whole numbers without `.0`."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e21:
        return int(x)
    return x


# Go's encoder escapes these inside strings (they cannot occur outside one in JSON text)
_HTML_ESCAPES = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)


def _go_escape(raw: bytes) -> bytes:
    for plain, escaped in _HTML_ESCAPES:
        if plain in raw:
            raw = raw.replace(plain, escaped)
    return raw


def indent_json(value: Any) -> bytes:
    """unrolled/render IndentJSON: json.MarshalIndent with two spaces, HTML-escaped, then a newline."""
    return _go_escape(orjson.dumps(value, option=orjson.OPT_INDENT_2)) + b"\n"


def compact_json(value: Any) -> bytes:
    return _go_escape(orjson.dumps(value))


def json_kind(value: object) -> str:
    """What Go's encoding/json calls a decoded value's type in its unmarshal errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"
