"""TiKV as an Operator subject (standard library only: see subjects/plugin.py)."""

from subjects.plugin import Flag, SubjectPlugin, Tool

PLUGIN = SubjectPlugin(
    name="tikv",
    summary="TiKV through PD's HTTP API (embedded simulator by default in the console)",
    settings="subjects.tikv.settings:TiKVSettings",
    build="subjects.tikv.settings:build",
    chaos="subjects.tikv.chaos",
    evaluation="subjects.tikv.evaluation:ADAPTER",
    lab="subjects.tikv.lab:LAB",
    embedded="subjects.tikv.settings:Embedded",
    flags=(
        Flag("--pd", "pd", "tikv: PD endpoint (the console starts an embedded simulator without it)", metavar="URL"),
        Flag("--prometheus", "prometheus", "tikv: read TiKV metrics through this Prometheus server", metavar="URL"),
        Flag("--host-agent", "host_agent", "tikv: the host agent that can restart or stop a store's process "
             "(enables restart_node/stop_node)", metavar="URL"),
        Flag("--sim-admin", "sim_admin", "tikv: the simulator's admin API, where `chaos` sends faults "
             "(printed by `operator-tui sim tikv`)", metavar="URL"),
        Flag("--tls-ca", "tls.ca", "tikv: CA certificate (PEM) of a TLS cluster: PD, status ports and Prometheus "
             "over HTTPS", metavar="FILE"),
        Flag("--tls-cert", "tls.cert", "tikv: client certificate (PEM) for a TLS cluster", metavar="FILE"),
        Flag("--tls-key", "tls.key", "tikv: the client certificate's private key (PEM)", metavar="FILE"),
    ),
    lab_flags=(
        Flag("--port", "port", "tikv: PD API port of the simulator (default: 2379)", type=int),
        Flag("--stores", "stores", "tikv: number of stores (default: 5)", type=int),
        Flag("--regions", "regions", "tikv: number of regions (default: 200)", type=int),
        Flag("--time-scale", "time_scale", "tikv: simulated seconds per wall second (default: 1)", type=float),
        Flag("--seed", "seed", "tikv: random seed (default: 0)", type=int),
    ),
    simulator=Tool(
        help="a PD-compatible TiKV cluster simulator",
        description="Serve a simulated TiKV cluster through PD's HTTP API on loopback.",
        run="subjects.tikv.sim.command:run",
        flags=(
            Flag("--host", "host", "address to bind (default: 127.0.0.1)", default="127.0.0.1"),
            Flag("--port", "port", "PD API port, 0 picks a free one (default: 2379)", type=int, default=2379),
            Flag("--stores", "stores", "number of TiKV stores (default: 5)", type=int, default=5),
            Flag("--regions", "regions", "number of regions (default: 200)", type=int, default=200),
            Flag("--replicas", "replicas", "replicas per region (default: 3)", type=int, default=3),
            Flag("--time-scale", "time_scale", "simulated seconds per wall second (default: 1.0)", type=float,
                 default=1.0),
            Flag("--seed", "seed", "random seed; same seed, same cluster (default: 0)", type=int, default=0),
            Flag("--store-hosts", "store_hosts", "comma-separated addresses, one per store, for each store's "
                 "status listener (default: --host)", metavar="A,B,..."),
            Flag("--admin-host", "admin_host", "address of the admin API (default: --host)", metavar="ADDR"),
            Flag("--host-agent-host", "host_agent_host", "address of the host agent (default: --host)",
                 metavar="ADDR"),
            Flag("--max-store-down-time", "max_store_down_time", "PD's max-store-down-time, a Go duration "
                 "(default: 30m0s)", default="30m0s"),
            Flag("--admin-port", "admin_port", "port of the admin API (faults, workload), 0 picks a free one "
                 "(default: 0)", type=int, default=0),
            Flag("--host-agent-port", "host_agent_port", "port of the host agent (restart, stop), 0 picks a free "
                 "one (default: 0)", type=int, default=0),
            Flag("--status-base-port", "status_base_port", "store N's status port is BASE+N; 0 picks free ports "
                 "(default: 0)", type=int, default=0),
            Flag("--log-level", "log_level", "log verbosity (default: info)",
                 choices=("debug", "info", "warning", "error"), default="info"),
        ),
    ),
)
