"""Logging: headless runs log to stderr; the console owns the terminal, so it logs to a file."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)-7s %(message)s"


class UTCFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        t = self.converter(record.created)
        return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


def setup(level: str = "info", file: Path | None = None) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(UTCFormatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request at INFO; that is noise at one observation a second.
    for noisy in ("httpx", "httpcore", "aiohttp.access", "anthropic", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
