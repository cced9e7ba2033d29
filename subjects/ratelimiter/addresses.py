"""Where each part of a rate limiter lab listens: one loopback address per part, in a block of its own.

Every 127.x.y.z address is local, so a lab given the block ``127.B.C`` puts every part on an
address of that block, and two labs in two blocks can use the same port numbers without meeting.
Each part also connects from its own address, so a network fault can name exactly one part's
traffic (see subjects.netfault)::

    127.B.C.1        redis-server
    127.B.C.2        the fault proxy (control API; its connections to Redis leave from here)
    127.B.C.3        the lab's load generator
    127.B.C.4        an evaluation workload (the harness's own clients)
    127.B.C.5        an evaluation oracle (the harness's own probes)
    127.B.C.(10+i)   node i
    127.B.C.(100+i)  node i's proxy link to Redis

Without a block (the default lab) everything is on 127.0.0.1, as before.
Evaluation slot k uses the block 127.(k+10).0.
"""

from __future__ import annotations

import ipaddress

LOCALHOST = "127.0.0.1"
REDIS, PROXY, LOADGEN, WORKLOAD, ORACLE = 1, 2, 3, 4, 5
NODE_BASE, LINK_BASE = 10, 100
MAX_NODES = 50  # node and link addresses must not overlap: 10+50 < 100+1
FIRST_SLOT_OCTET = 10
MAX_SLOT = 255 - FIRST_SLOT_OCTET


class AddressError(ValueError):
    pass


def parse_block(text: str) -> str:
    """``127.B.C`` from "127.B.C", "127.B.C.0" or "127.B.C.0/24"; AddressError otherwise.

    127.0.0.0/24 is refused: 127.0.0.1 is where the default lab and most local tools listen."""
    raw = text.strip()
    network = raw.removesuffix("/24")
    if network.count(".") == 2:
        network += ".0"
    wrong = AddressError(f"address block {text!r}: expected a loopback /24 such as 127.11.0.0/24")
    try:
        address = ipaddress.IPv4Address(network)
    except ValueError:
        raise wrong from None
    octets = str(address).split(".")
    if octets[0] != "127" or octets[3] != "0" or "/" in network:
        raise wrong
    if octets[1:3] == ["0", "0"]:
        raise AddressError("address block 127.0.0.0/24 is taken by the default lab; use another (e.g. 127.11.0.0/24)")
    return ".".join(octets[:3])


def slot_block(slot: int) -> str:
    """The block of evaluation slot `slot` (0-based): 127.(slot+10).0."""
    if not 0 <= slot <= MAX_SLOT:
        raise AddressError(f"slot must be between 0 and {MAX_SLOT}, got {slot}")
    return f"127.{slot + FIRST_SLOT_OCTET}.0"


class AddressPlan:
    """The address of each part of one lab (all 127.0.0.1 without a block)."""

    def __init__(self, block: str | None = None) -> None:
        self.block = parse_block(block) if block else None

    def _host(self, last: int) -> str:
        return f"{self.block}.{last}" if self.block else LOCALHOST

    @property
    def redis(self) -> str:
        return self._host(REDIS)

    @property
    def proxy(self) -> str:
        return self._host(PROXY)

    @property
    def loadgen(self) -> str:
        return self._host(LOADGEN)

    @property
    def workload(self) -> str:
        return self._host(WORKLOAD)

    @property
    def oracle(self) -> str:
        return self._host(ORACLE)

    def node(self, i: int) -> str:
        return self._host(NODE_BASE + i)

    def link(self, i: int) -> str:
        return self._host(LINK_BASE + i)

    def cidr(self) -> str:
        return f"{self.block}.0/24" if self.block else f"{LOCALHOST}/32"
