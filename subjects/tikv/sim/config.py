"""The simulator's configuration: what `operator-tui sim tikv` and the embedded default cluster pass in."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from subjects.tikv.sim.goformat import parse_go_duration


class SimConfig(BaseModel):
    """One simulated TiKV cluster behind one PD endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=2379, ge=0, le=65535)
    stores: int = Field(default=5, ge=1, le=5000)
    regions: int = Field(default=200, ge=1, le=2_000_000)
    replicas: int = Field(default=3, ge=1)
    time_scale: float = Field(default=1.0, gt=0)
    seed: int = 0
    # Store N's status port is status_base_port + N; 0 lets the OS pick free ports.
    status_base_port: int = Field(default=0, ge=0, le=65535)
    # PD's `schedule.max-store-down-time`, a Go duration string; changeable later through POST /config.
    max_store_down_time: str = "30m0s"
    # "aggregate": PD <= v8.5.4 exports pd_cluster_status{type} only;
    # "per_store": v8.5.5+ adds the `engine` and `store` labels.
    pd_metrics_style: Literal["aggregate", "per_store"] = "aggregate"
    # Client requests per second across the whole cluster; None means 500 per store.
    workload_qps: float | None = Field(default=None, ge=0)
    # Share of the workload that reads (the rest writes).
    read_ratio: float = Field(default=0.75, ge=0, le=1)
    # Wall seconds between two steps of the server's tick loop.
    tick_interval: float = Field(default=0.05, gt=0, le=5)
    # Store N's status listener binds store_hosts[N-1] when given (each store on an address of its
    # own, as on separate machines), else `host`.
    store_hosts: tuple[str, ...] = ()
    # The simulator's own API (faults, workload read-out, info) on a listener of its own that the
    # operator is never told about; None: `host`. Port 0 picks a free one.
    admin_host: str | None = None
    admin_port: int = Field(default=0, ge=0, le=65535)
    # The host agent (restart or stop a store's process), what a machine's supervisor offers the
    # operator; None: `host`.
    host_agent_host: str | None = None
    host_agent_port: int = Field(default=0, ge=0, le=65535)
    # TLS as a secured TiKV cluster runs it: PD and every status port serve HTTPS with this
    # certificate and key, and require a client certificate signed by tls_ca.
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None

    @field_validator("max_store_down_time")
    @classmethod
    def _duration(cls, v: str) -> str:
        seconds = parse_go_duration(v)
        if seconds <= 0:
            raise ValueError("max_store_down_time must be positive")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SimConfig:
        if self.replicas > self.stores:
            raise ValueError(f"replicas ({self.replicas}) cannot exceed stores ({self.stores})")
        if self.store_hosts and len(self.store_hosts) != self.stores:
            raise ValueError(f"store_hosts names {len(self.store_hosts)} addresses for {self.stores} stores")
        if self.status_base_port and self.status_base_port + self.stores > 65535:
            raise ValueError("status_base_port + stores must stay below 65536")
        if (self.tls_cert is None) != (self.tls_key is None) or (self.tls_ca is not None and self.tls_cert is None):
            raise ValueError("TLS needs tls_cert and tls_key (and tls_ca to require client certificates)")
        return self

    def server_ssl(self) -> Any:
        """The server-side SSL context, or None without TLS."""
        if self.tls_cert is None:
            return None
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls_cert, self.tls_key)
        if self.tls_ca is not None:
            context.load_verify_locations(self.tls_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    @property
    def total_qps(self) -> float:
        return self.workload_qps if self.workload_qps is not None else 500.0 * self.stores
