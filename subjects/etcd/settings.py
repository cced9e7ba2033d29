"""The `[etcd]` settings section and how the core builds the etcd subject from it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from subjects.plugin import SubjectContext


def http_urls(urls: dict[str, str]) -> dict[str, str]:
    bad = [f"{name}={url!r}" for name, url in urls.items() if not url.startswith(("http://", "https://"))]
    if bad:
        raise ValueError(f"metrics URLs must start with http:// or https://: {', '.join(bad)}")
    return urls


class EtcdSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoints: list[str] = Field(default_factory=list)  # members' client URLs; empty: the local lab's
    lab_dir: str | None = None  # a lab's run folder (state.json); empty: the lab folder of --lab-dir
    probe_timeout: float = Field(1.0, gt=0, le=30)  # per call: a stopped member hangs instead of refusing
    latency_window_s: float = Field(30.0, gt=0, le=3600)  # fsync/commit p99 over this window
    # lab: short graces and windows for seconds-long faults; production: the reference's; auto: lab
    # when watching the local lab, production when given endpoints.
    profile: Literal["auto", "lab", "production"] = "auto"
    expected_members: list[str] | None = None  # member names; default: the lab's members
    # member name -> base URL of its metrics listener (--listen-metrics-urls); others: their client URL
    metrics_urls: dict[str, str] = Field(default_factory=dict)
    _http_urls = field_validator("metrics_urls")(http_urls)
    quota_warning: float = Field(0.8, gt=0, le=1)
    quota_critical: float = Field(0.95, gt=0, le=1)
    fragmentation_ratio: float = Field(0.5, gt=0, le=1)
    apply_lag_entries: int = Field(1000, ge=1)
    leader_changes_max: int = Field(3, ge=0)
    wal_fsync_p99_s: float = Field(0.5, gt=0)
    backend_commit_p99_s: float = Field(0.25, gt=0)
    graces: dict[str, float] = Field(default_factory=dict)


def subject_options(section: EtcdSettings, ctx: SubjectContext) -> dict[str, Any]:
    thresholds = section.model_dump(include={"quota_warning", "quota_critical", "fragmentation_ratio",
                                             "apply_lag_entries", "leader_changes_max", "wal_fsync_p99_s",
                                             "backend_commit_p99_s", "graces"})
    return {"endpoints": section.endpoints, "lab_dir": section.lab_dir or str(ctx.lab_dir), "probe_timeout": section.probe_timeout,
            "latency_window_s": section.latency_window_s, "profile": section.profile,
            "expected_members": section.expected_members, "metrics_urls": section.metrics_urls,
            "thresholds": thresholds}


async def build(section: EtcdSettings, ctx: SubjectContext) -> Any:
    from subjects.etcd.subject import build as build_subject

    return await build_subject(subject_options(section, ctx))
