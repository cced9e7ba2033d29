"""Times are UTC with timezone everywhere; stored as ISO 8601 text that sorts chronologically."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_text(dt: datetime) -> str:
    if dt.tzinfo is None:
        raise ValueError("naive datetime: every time in the store carries its timezone")
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def from_text(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text)


def now_text() -> str:
    return to_text(utcnow())
