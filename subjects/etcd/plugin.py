"""etcd 3.4 as an Operator subject (standard library only: see subjects/plugin.py)."""

from subjects.plugin import Flag, SubjectPlugin


def url_list(text: str) -> list[str]:
    """`--endpoints http://a:2379,http://b:2379` as a list."""
    return [part.strip() for part in text.split(",") if part.strip()]


PLUGIN = SubjectPlugin(
    name="etcd",
    summary="a real etcd 3.4 cluster through its JSON gateway (local lab: Debian etcd members on loopback)",
    settings="subjects.etcd.settings:EtcdSettings",
    build="subjects.etcd.settings:build",
    chaos="subjects.etcd.chaos",
    lab="subjects.etcd.lab_command:LAB",
    evaluation="subjects.etcd.evaluation:ADAPTER",
    flags=(
        Flag("--endpoints", "endpoints", "etcd: members' client URLs, comma-separated (default: the local lab's)",
             metavar="URLS", type=url_list),
    ),
    lab_flags=(
        Flag("--members", "members", "etcd: number of members (default: 3)", type=int),
        Flag("--address-block", "address_block", "etcd: member i listens on BLOCK.i (default: 127.0.0; with "
             "--docker: 127.18.1)",
             metavar="BLOCK"),
        Flag("--client-port", "client_port", "etcd: client port on every member's address (default: 23790)",
             type=int),
        Flag("--peer-port", "peer_port", "etcd: peer port on every member's address (default: 23800)", type=int),
        Flag("--load-rate", "load_rate", "etcd: load generator operations per second (default: 20)", type=float),
        Flag("--no-load", "no_load", "do not start the load generator", store_true=True),
        Flag("--no-pre-vote", "no_pre_vote", "etcd: members run without --pre-vote (disruptive rejoins)",
             store_true=True),
        Flag("--quota-mb", "quota_mb", "etcd: --quota-backend-bytes in MiB (default: 16, small for NOSPACE)",
             type=float),
        Flag("--tmpfs-mb", "tmpfs_mb", "etcd: size of each member's own tmpfs, 0 for none (default: 192)",
             type=int),
        Flag("--docker", "docker", "etcd: run the lab as containers (DOCKER_HOST, default: the project's local "
             "engine, scripts/dockerd.sh)", store_true=True),
    ),
)
