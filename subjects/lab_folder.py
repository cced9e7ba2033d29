"""A lab's run folder, shared by the labs of every subject: one lab command at a time per folder
(an flock across processes) and a state file replaced whole (a reader never sees half a write)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def locked(lock_path: Path, timeout_s: float, busy: Callable[[], Exception]) -> Iterator[None]:
    """Hold `lock_path`'s flock; raise `busy()` when another holder keeps it past `timeout_s`."""
    with open(lock_path, "a+") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise busy() from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_whole(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
