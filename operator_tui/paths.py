"""Where the operator keeps its files by default (XDG data directory)."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "operator-tui"


def default_db() -> Path:
    return data_dir() / "operator.db"


def default_lab_dir(subject: str) -> Path:
    """A lab's run folder: pid files, ports, data and logs of the processes it started."""
    return data_dir() / "labs" / subject
