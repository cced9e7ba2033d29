"""The etcd subject: members observed one by one through the JSON gateway, the lab's processes beside them.

Options: the members' client URLs and/or a lab folder to read them from (`lab up etcd` writes it).
With a lab, member processes can also be restarted, resumed, replaced or added (the actions that
need process control); without one those actions are not offered. Watching the lab selects the
`lab` profile of graces and windows, watching given endpoints the `production` one (unless set).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from subjects.base import ActionDef, ClusterIdentity, Invariant, Observation, Runbook
from subjects.etcd.client import EtcdClient
from subjects.etcd.invariants import Thresholds, build_invariants
from subjects.etcd.observe import EtcdObserver
from subjects.etcd.settings import http_urls


class EtcdOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoints: list[str] = Field(default_factory=list, description="members' client URLs; more are found in the "
                                                                   "member list")
    lab_dir: str | None = Field(None, description="a lab's run folder (state.json): members and their processes")
    probe_timeout: float = Field(1.0, gt=0, le=30)
    latency_window_s: float = Field(30.0, gt=0, le=3600)
    latency_min_samples: int = Field(5, ge=1)  # fewer fsyncs/commits in the window than this: no p99
    profile: Literal["auto", "lab", "production"] = "auto"
    expected_members: list[str] | None = None
    metrics_urls: dict[str, str] = Field(default_factory=dict, description="member name -> base URL of its metrics "
                                         "listener (etcd's --listen-metrics-urls); others: their client URL")
    thresholds: dict[str, Any] = Field(default_factory=dict)

    _http_urls = field_validator("metrics_urls")(http_urls)


class EtcdSubject:
    name = "etcd"

    def __init__(self, options: EtcdOptions, lab: Any = None):
        self.options = options
        self.lab = lab
        profile = options.profile if options.profile != "auto" else ("lab" if lab is not None else "production")
        self.thresholds = Thresholds.model_validate({**options.thresholds, "profile": profile})
        self.observer = EtcdObserver(endpoints=options.endpoints, lab=lab, probe_timeout=options.probe_timeout,
                                     latency_window_s=options.latency_window_s,
                                     latency_min_samples=options.latency_min_samples,
                                     leader_window_s=self.thresholds.leader_window(),
                                     expected_members=options.expected_members,
                                     metrics_urls=options.metrics_urls)
        where = f"lab {lab.run_dir}" if lab is not None else ", ".join(options.endpoints)
        count = len(lab.member_names()) if lab is not None else len(options.endpoints)
        self.display = f"etcd: {count} member{'s' if count != 1 else ''} ({where})"
        self._invariants = build_invariants(self.thresholds)
        self._client = EtcdClient(timeout=5.0)  # actions: longer than a probe, quorum calls take up to 7 s
        self._identity: ClusterIdentity | None = None

    async def observe(self) -> Observation:
        return await self.observer.observe()

    async def cluster_identity(self) -> ClusterIdentity | None:
        """etcd's cluster id (every response header carries it); a lab is not a real cluster."""
        if self._identity is None:
            from subjects.etcd.client import EtcdError

            for url in self.observer._targets():
                try:
                    header = (await self.observer.client.status(url)).get("header") or {}
                except (EtcdError, OSError, ValueError):
                    continue
                if header.get("cluster_id"):
                    cid = str(header["cluster_id"])
                    self._identity = ClusterIdentity(
                        id=f"etcd-lab:{self.lab.run_dir}:{cid}" if self.lab is not None else f"etcd-cluster:{cid}",
                        real=self.lab is None,
                        detail=f"etcd cluster {cid}" + (f" (lab {self.lab.run_dir})" if self.lab is not None else ""))
                    break
        return self._identity

    def invariants(self) -> list[Invariant]:
        return list(self._invariants)

    def runbooks(self) -> dict[str, Runbook]:
        from subjects.etcd.runbooks import build_runbooks

        return build_runbooks(self.thresholds)

    def actions(self) -> list[ActionDef]:
        from subjects.etcd.actions import Catalogue

        return Catalogue(self.observer, self._client, lab=self.lab).build()

    async def aclose(self) -> None:
        await self.observer.aclose()
        await self._client.aclose()
        if self.lab is not None:
            self.lab.close()


def _load_lab(lab_dir: str | None) -> Any:
    if not lab_dir:
        return None
    from subjects.etcd.lab import LabError, open_lab

    lab = open_lab(lab_dir)
    try:
        lab.state  # noqa: B018 - raises LabError when no lab is up there
    except LabError:
        return None
    return lab if lab.is_up() else None


async def build(options: dict[str, Any]) -> EtcdSubject:
    opts = EtcdOptions.model_validate(options)
    lab = _load_lab(opts.lab_dir)
    if lab is not None and opts.endpoints:
        # Given endpoints name the cluster; the lab's process control applies only if it is that cluster.
        ours = {u.rstrip("/") for u in lab.client_urls().values()}
        if not ours & {u.rstrip("/") for u in opts.endpoints}:
            lab = None
    if lab is None and not opts.endpoints:
        where = f" (no lab is up in {opts.lab_dir})" if opts.lab_dir else ""
        raise ValueError("no etcd to watch: give its members' client URLs (--endpoints), or start the local lab "
                         f"with `operator-tui lab up etcd`{where}")
    return EtcdSubject(opts, lab)
