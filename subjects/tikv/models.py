"""PD's JSON as pydantic models that tolerate what PD leaves out.

PD's store meta is a gogo-proto struct with `omitempty` everywhere: an Up store has no `state`
key, a Preparing store no `node_state`, empty labels vanish; status fields like `slow_score`
are omitted when zero. Every field therefore has a default that means what its absence means.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from subjects.tikv.units import parse_bytes


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Label(Lenient):
    key: str
    value: str = ""


class StoreMeta(Lenient):
    id: int
    address: str = ""
    state: int = 0  # Up=0 (omitted), Offline=1, Tombstone=2
    labels: list[Label] = Field(default_factory=list)
    version: str = ""
    status_address: str = ""
    start_timestamp: int = 0
    last_heartbeat: int = 0  # unix nanoseconds
    physically_destroyed: bool = False
    node_state: int = 0
    state_name: str = "Up"


class StoreStatus(Lenient):
    capacity: str | int | float | None = None
    available: str | int | float | None = None
    used_size: str | int | float | None = None
    leader_count: int = 0
    leader_weight: float = 1.0
    leader_score: float = 0.0
    region_count: int = 0
    region_weight: float = 1.0
    region_score: float = 0.0
    pending_peer_count: int = 0
    slow_score: float = 0.0  # omitted means 0; TiKV reports 1 when healthy
    is_busy: bool = False
    last_heartbeat_ts: str | None = None
    uptime: str | None = None

    @property
    def capacity_bytes(self) -> float | None:
        return parse_bytes(self.capacity)

    @property
    def available_bytes(self) -> float | None:
        return parse_bytes(self.available)

    @property
    def used_bytes(self) -> float | None:
        return parse_bytes(self.used_size)


class StoreInfo(Lenient):
    store: StoreMeta
    status: StoreStatus = Field(default_factory=StoreStatus)

    @property
    def labels(self) -> dict[str, str]:
        return {label.key: label.value for label in self.store.labels}


class Peer(Lenient):
    id: int = 0
    store_id: int = 0
    role_name: str = ""
    is_learner: bool = False


class DownPeer(Lenient):
    peer: Peer
    down_seconds: int = 0


class RegionInfo(Lenient):
    id: int
    start_key: str = ""
    end_key: str = ""
    epoch: dict[str, Any] = Field(default_factory=dict)
    peers: list[Peer] = Field(default_factory=list)
    leader: Peer = Field(default_factory=Peer)
    down_peers: list[DownPeer] = Field(default_factory=list)
    pending_peers: list[Peer] = Field(default_factory=list)
    written_bytes: int = 0
    read_bytes: int = 0
    approximate_size: int = 0
    approximate_keys: int = 0

    @property
    def leader_store(self) -> int | None:
        return self.leader.store_id or None
