"""Which subjects exist and how to build them, so the core never names a system itself."""

from __future__ import annotations

import importlib
from typing import Any

from subjects.base import Subject

# name -> module defining `async def build(options: dict) -> Subject`
FACTORIES = {
    "tikv": "subjects.tikv.subject",
    "ratelimiter": "subjects.ratelimiter.subject",
}


# name -> module defining kinds(), async inject(options, kind, target, params) -> FaultRecord,
# async revert(options, record) -> str
CHAOS = {
    "tikv": "subjects.tikv.chaos",
    "ratelimiter": "subjects.ratelimiter.chaos",
}


def chaos(name: str):
    if name not in CHAOS:
        raise ValueError(f"unknown subject {name!r}; known: {', '.join(CHAOS)}")
    return importlib.import_module(CHAOS[name])


def names() -> list[str]:
    return list(FACTORIES)


async def build_subject(name: str, options: dict[str, Any]) -> Subject:
    if name not in FACTORIES:
        raise ValueError(f"unknown subject {name!r}; known: {', '.join(FACTORIES)}")
    module = importlib.import_module(FACTORIES[name])
    return await module.build(options)
