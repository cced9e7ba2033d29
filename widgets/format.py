"""Short, fixed-width renderings of numbers for dense panels (tiles, status lines, tables)."""

from __future__ import annotations

from datetime import UTC, datetime


def count(value: float | None) -> str:
    """12, 1.2k, 34k, 1.2M; '-' when unknown."""
    if value is None:
        return "-"
    v = float(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= limit:
            scaled = v / limit
            return f"{scaled:.1f}{suffix}" if abs(scaled) < 10 else f"{scaled:.0f}{suffix}"
    return f"{v:.0f}" if v == int(v) or abs(v) >= 10 else f"{v:.1f}"


def size(value: float | None) -> str:
    """Bytes in binary units: 512B, 1.5G, 2.0T."""
    if value is None:
        return "-"
    v = float(value)
    for limit, suffix in ((1 << 50, "P"), (1 << 40, "T"), (1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")):
        if v >= limit:
            return f"{v / limit:.1f}{suffix}"
    return f"{v:.0f}B"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    v = float(value)
    if v >= 1000:
        return f"{v / 1000:.1f}s"
    return f"{v:.0f}ms" if v >= 10 else f"{v:.1f}ms"


def percent(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{float(value) * 100:.{digits}f}%"


def clock(at: datetime | None) -> str:
    """HH:MM:SS in UTC (every time in the store is UTC)."""
    if at is None:
        return "-"
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return at.strftime("%H:%M:%S")


def stamp(at: datetime | None) -> str:
    """Date and time in UTC, for detail views."""
    if at is None:
        return "-"
    if at.tzinfo is not None:
        at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%SZ")


def clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def params(values: dict | None, width: int = 60) -> str:
    if not values:
        return "-"
    return clip(" ".join(f"{k}={v}" for k, v in values.items()), width)
