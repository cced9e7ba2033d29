"""PD's configuration document (GET /config) and the rules for changing it (POST /config).

Keys, defaults and JSON types follow PD v8.5: durations are Go duration strings, flags declared
`,string` in Go are JSON strings ("true"), and unknown keys are refused with "config item x not found".
"""

from __future__ import annotations

import math
from typing import Any

from subjects.tikv.sim.goformat import go_duration, json_kind, parse_go_duration

# Value kinds: how a key is validated and rendered.
INT, FLOAT, DURATION, BOOLSTR, STR, RAW = "int", "float", "duration", "boolstr", "str", "raw"

# (key, default, kind) in the order PD's ScheduleConfig struct declares them.
SCHEDULE_ITEMS: list[tuple[str, Any, str]] = [
    ("max-snapshot-count", 64, INT),
    ("max-pending-peer-count", 64, INT),
    ("max-merge-region-size", 54, INT),
    ("max-merge-region-keys", 540000, INT),
    ("split-merge-interval", "1h0m0s", DURATION),
    ("switch-witness-interval", "1h0m0s", DURATION),
    ("enable-one-way-merge", "false", BOOLSTR),
    ("enable-cross-table-merge", "true", BOOLSTR),
    ("patrol-region-interval", "10ms", DURATION),
    ("max-store-down-time", "30m0s", DURATION),
    ("max-store-preparing-time", "48h0m0s", DURATION),
    ("leader-schedule-limit", 4, INT),
    ("leader-schedule-policy", "count", STR),
    ("region-schedule-limit", 2048, INT),
    ("witness-schedule-limit", 4, INT),
    ("replica-schedule-limit", 64, INT),
    ("merge-schedule-limit", 8, INT),
    ("hot-region-schedule-limit", 4, INT),
    ("hot-region-cache-hits-threshold", 3, INT),
    ("store-limit", None, RAW),
    ("tolerant-size-ratio", 0, FLOAT),
    ("low-space-ratio", 0.8, FLOAT),
    ("high-space-ratio", 0.7, FLOAT),
    ("region-score-formula-version", "v2", STR),
    ("scheduler-max-waiting-operator", 5, INT),
    ("enable-remove-down-replica", "true", BOOLSTR),
    ("enable-replace-offline-replica", "true", BOOLSTR),
    ("enable-make-up-replica", "true", BOOLSTR),
    ("enable-remove-extra-replica", "true", BOOLSTR),
    ("enable-location-replacement", "true", BOOLSTR),
    ("enable-debug-metrics", "false", BOOLSTR),
    ("enable-joint-consensus", "true", BOOLSTR),
    ("enable-tikv-split-region", "true", BOOLSTR),
    ("schedulers-v2", None, RAW),
    ("schedulers-payload", None, RAW),
    ("hot-regions-write-interval", "10m0s", DURATION),
    ("hot-regions-reserved-days", 7, INT),
    ("enable-diagnostic", "true", BOOLSTR),
    ("enable-witness", "false", BOOLSTR),
    ("slow-store-evicting-affected-store-ratio-threshold", 0.3, FLOAT),
    ("store-limit-version", "v1", STR),
    ("patrol-region-worker-count", 1, INT),
    ("max-movable-hot-peer-size", 512, INT),
    ("enable-heartbeat-breakdown-metrics", "true", BOOLSTR),
    ("enable-heartbeat-concurrent-runner", "true", BOOLSTR),
]

REPLICATION_ITEMS: list[tuple[str, Any, str]] = [
    ("max-replicas", 3, INT),
    ("location-labels", "", STR),
    ("strictly-match-label", "false", BOOLSTR),
    ("enable-placement-rules", "true", BOOLSTR),
    ("enable-placement-rules-cache", "false", BOOLSTR),
    ("isolation-level", "", STR),
]

PD_SERVER_ITEMS: list[tuple[str, Any, str]] = [
    ("use-region-storage", "true", BOOLSTR),
    ("max-gap-reset-ts", "24h0m0s", DURATION),
    ("key-type", "table", STR),
    ("runtime-services", "", STR),
    ("metric-storage", "", STR),
    ("dashboard-address", "auto", STR),
    ("trace-region-flow", "true", BOOLSTR),
    ("flow-round-by-digit", 3, INT),
    ("min-resolved-ts-persistence-interval", "1s", DURATION),
    ("server-memory-limit", 0, FLOAT),
    ("server-memory-limit-gc-trigger", 0.7, FLOAT),
    ("enable-gogc-tuner", "false", BOOLSTR),
    ("gc-tuner-threshold", 0.6, FLOAT),
    ("block-safe-point-v1", "false", BOOLSTR),
]

SECTIONS = {"schedule": SCHEDULE_ITEMS, "replication": REPLICATION_ITEMS, "pd-server": PD_SERVER_ITEMS}

DEFAULT_SCHEDULERS = ("balance-region", "balance-leader", "hot-region", "evict-slow-store")


class ConfigError(ValueError):
    """A refused configuration change; the message is what PD answers with a 400."""


def _go_type(kind: str) -> str:
    return {
        INT: "uint64",
        FLOAT: "float64",
        DURATION: "typeutil.Duration",
        BOOLSTR: "bool",
        STR: "string",
    }.get(kind, "interface {}")



def coerce(section: str, key: str, kind: str, value: Any) -> Any:
    """Validate one value the way Go's json.Unmarshal into PD's config struct would."""
    field = f"Go struct field {section}.{key} of type {_go_type(kind)}"
    if kind == INT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"json: cannot unmarshal {json_kind(value)} into {field}")
        if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
            raise ConfigError(f"json: cannot unmarshal number {value} into {field}")
        if value < 0:
            raise ConfigError(f"json: cannot unmarshal number {value} into {field}")
        return int(value)
    if kind == FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(f"json: cannot unmarshal {json_kind(value)} into {field}")
        return int(value) if float(value).is_integer() else float(value)
    if kind == DURATION:
        if not isinstance(value, str):
            raise ConfigError("invalid character in duration: expected a quoted Go duration string")
        try:
            seconds = parse_go_duration(value)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return go_duration(seconds)
    if kind == BOOLSTR:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower()
        raise ConfigError(f"json: invalid use of ,string struct tag, trying to unmarshal {value!r} into bool")
    if kind == STR:
        if not isinstance(value, str):
            raise ConfigError(f"json: cannot unmarshal {json_kind(value)} into {field}")
        return value
    raise ConfigError(f"config item {key} cannot be changed")


class PDConfig:
    """The live PD configuration. The model reads the typed properties; the API renders the document."""

    def __init__(
        self, *, max_store_down_time: str, max_replicas: int, store_ids: list[int], pd_url: str
    ) -> None:
        self.sections: dict[str, dict[str, Any]] = {
            name: {key: default for key, default, _ in items} for name, items in SECTIONS.items()
        }
        self.kinds = {name: {key: kind for key, _, kind in items} for name, items in SECTIONS.items()}
        self.sections["schedule"]["max-store-down-time"] = go_duration(parse_go_duration(max_store_down_time))
        self.sections["replication"]["max-replicas"] = max_replicas
        self.sections["schedule"]["store-limit"] = {
            str(sid): {"add-peer": 15, "remove-peer": 15} for sid in store_ids
        }
        self.sections["schedule"]["schedulers-v2"] = [
            {"type": t, "args": None, "disable": False, "args-payload": ""} for t in DEFAULT_SCHEDULERS
        ]
        self.sections["schedule"]["schedulers-payload"] = None
        self.pd_url = pd_url
        self._refresh()

    def _refresh(self) -> None:
        s = self.sections["schedule"]
        self.max_store_down_time = parse_go_duration(s["max-store-down-time"])
        self.leader_schedule_limit = int(s["leader-schedule-limit"])
        self.region_schedule_limit = int(s["region-schedule-limit"])
        self.replica_schedule_limit = int(s["replica-schedule-limit"])
        self.hot_region_schedule_limit = int(s["hot-region-schedule-limit"])
        self.low_space_ratio = float(s["low-space-ratio"])
        self.max_snapshot_count = int(s["max-snapshot-count"])
        self.max_merge_region_size = int(s["max-merge-region-size"])
        self.max_merge_region_keys = int(s["max-merge-region-keys"])
        self.enable_remove_down_replica = s["enable-remove-down-replica"] == "true"
        self.enable_replace_offline_replica = s["enable-replace-offline-replica"] == "true"
        self.enable_make_up_replica = s["enable-make-up-replica"] == "true"
        self.enable_remove_extra_replica = s["enable-remove-extra-replica"] == "true"
        self.max_replicas = int(self.sections["replication"]["max-replicas"])

    def find(self, key: str) -> tuple[str, str]:
        """(section, item) for a POST /config key, plain (`max-store-down-time`) or dotted."""
        if "." in key:
            section, _, item = key.partition(".")
            if section in self.kinds and item in self.kinds[section]:
                return section, item
            raise ConfigError(f"config item {key} not found")
        for section in ("schedule", "replication", "pd-server"):
            if key in self.kinds[section]:
                return section, key
        raise ConfigError(f"config item {key} not found")

    def update(self, changes: dict[str, Any], section: str | None = None) -> list[str]:
        """Apply a whole patch or nothing; returns the changed keys. Raises ConfigError."""
        staged: list[tuple[str, str, Any]] = []
        for key, value in changes.items():
            if section is None:
                sec, item = self.find(key)
            else:
                if key not in self.kinds[section]:
                    raise ConfigError(f"config item {key} not found")
                sec, item = section, key
            kind = self.kinds[sec][item]
            new = coerce(sec, item, kind, value)
            if sec == "replication" and item == "max-replicas" and new < 1:
                raise ConfigError("max-replicas should be at least 1")
            if sec == "schedule" and item == "max-store-down-time" and parse_go_duration(new) <= 0:
                raise ConfigError("max-store-down-time should be positive")
            staged.append((sec, item, new))
        for sec, item, new in staged:
            self.sections[sec][item] = new
        self._refresh()
        return [item for _, item, _ in staged]

    def add_store(self, store_id: int) -> None:
        self.sections["schedule"]["store-limit"].setdefault(
            str(store_id), {"add-peer": 15, "remove-peer": 15}
        )

    def document(self, cluster_version: str) -> dict[str, Any]:
        """GET /config: the whole config.Config, top-level keys in PD's order."""
        url = self.pd_url
        return {
            "client-urls": url,
            "peer-urls": "http://127.0.0.1:2380",
            "advertise-client-urls": url,
            "advertise-peer-urls": "http://127.0.0.1:2380",
            "name": "pd-0",
            "data-dir": "default.pd-0",
            "force-new-cluster": False,
            "enable-grpc-gateway": True,
            "initial-cluster": "pd-0=http://127.0.0.1:2380",
            "initial-cluster-state": "new",
            "initial-cluster-token": "pd-cluster",
            "join": "",
            "lease": 5,
            "log": {
                "level": "info",
                "format": "text",
                "disable-timestamp": False,
                "file": {"filename": "", "max-size": 0, "max-days": 0, "max-backups": 0},
                "development": False,
                "disable-caller": False,
                "disable-stacktrace": False,
                "disable-error-verbose": True,
                "sampling": None,
                "error-output-path": "",
            },
            "tso-save-interval": "3s",
            "tso-update-physical-interval": "50ms",
            "enable-local-tso": False,
            "metric": {"job": "pd-0", "address": "", "interval": "15s"},
            "schedule": dict(self.sections["schedule"]),
            "replication": dict(self.sections["replication"]),
            "pd-server": dict(self.sections["pd-server"]),
            "cluster-version": cluster_version,
            "labels": {},
            "quota-backend-bytes": "8GiB",
            "auto-compaction-mode": "periodic",
            "auto-compaction-retention-v2": "1h",
            "tick-interval": "500ms",
            "election-interval": "3s",
            "enable-prevote": True,
            "max-request-bytes": 157286400,
            "security": {
                "cacert-path": "",
                "cert-path": "",
                "key-path": "",
                "cert-allowed-cn": None,
                "SSLCABytes": None,
                "SSLCertBytes": None,
                "SSLKEYBytes": None,
                "redact-info-log": False,
                "encryption": {
                    "data-encryption-method": "plaintext",
                    "data-key-rotation-period": "168h0m0s",
                    "master-key": {
                        "type": "plaintext",
                        "key-id": "",
                        "region": "",
                        "endpoint": "",
                        "path": "",
                    },
                },
            },
            "label-property": {},
            "dashboard": {
                "tidb-cacert-path": "",
                "tidb-cert-path": "",
                "tidb-key-path": "",
                "public-path-prefix": "",
                "internal-proxy": False,
                "enable-telemetry": False,
                "enable-experimental": False,
            },
            "replication-mode": {
                "replication-mode": "majority",
                "dr-auto-sync": {
                    "label-key": "",
                    "primary": "",
                    "dr": "",
                    "primary-replicas": 0,
                    "dr-replicas": 0,
                    "wait-store-timeout": "1m0s",
                    "pause-region-split": "false",
                },
            },
            "keyspace": {
                "pre-alloc": None,
                "wait-region-split": True,
                "wait-region-split-timeout": "30s",
                "check-region-split-interval": "50ms",
            },
            "micro-service": {"enable-scheduling-fallback": "true"},
            "controller": {
                "degraded-mode-wait-duration": "0s",
                "ltb-max-wait-duration": "30s",
                "ltb-token-rpc-max-delay": "1s",
                "request-unit": {
                    "read-base-cost": 0.125,
                    "read-per-batch-base-cost": 0.5,
                    "read-cost-per-byte": 0.0000152587890625,
                    "write-base-cost": 1,
                    "write-per-batch-base-cost": 1,
                    "write-cost-per-byte": 0.0009765625,
                    "read-cpu-ms-cost": 0.3333333333333333,
                },
                "enable-controller-trace-log": "false",
            },
        }
