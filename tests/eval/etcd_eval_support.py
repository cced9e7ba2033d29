"""Helpers for etcd's evaluation adapter tests."""

from __future__ import annotations

import random

from subjects.etcd.lab import address_free
from subjects.evaluation import AddressBlock


def free_block(members: int = 3) -> AddressBlock:
    """A slot block (drawn from 100..244, rarely anyone else's) whose members' ports are free."""
    rng = random.Random()
    for _ in range(300):
        block = AddressBlock.for_slot(rng.randrange(100, 245), rng.randrange(20_000, 31_000))
        if all(address_free(block.address(i), block.port(p)) for i in range(1, members + 1) for p in (0, 1)):
            return block
    raise RuntimeError("no free address block found")
