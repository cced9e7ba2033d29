"""The rate limiter as an Operator subject (standard library only: see subjects/plugin.py)."""

from subjects.plugin import Flag, SubjectPlugin

PLUGIN = SubjectPlugin(
    name="ratelimiter",
    summary="the project's distributed rate limiter: N nodes sharing one Redis",
    settings="subjects.ratelimiter.settings:RateLimiterSettings",
    build="subjects.ratelimiter.settings:build",
    chaos="subjects.ratelimiter.chaos",
    lab="subjects.ratelimiter.lab_command:LAB",
    evaluation="subjects.ratelimiter.evaluation:ADAPTER",
    lab_flags=(
        Flag("--nodes", "nodes", "ratelimiter: number of nodes (default: 3)", type=int),
        Flag("--redis-port", "redis_port", "ratelimiter: redis-server port", type=int),
        Flag("--base-port", "base_port", "ratelimiter: node N listens on BASE+N", type=int),
        Flag("--no-load", "no_load", "ratelimiter: do not start the load generator", store_true=True),
        Flag("--addresses", "addresses", "ratelimiter: give every part its own address in this loopback block, "
             "e.g. 127.11.0.0/24 (default: all on 127.0.0.1; with --docker: 127.18.0.0/24)", metavar="BLOCK"),
        Flag("--redis-disk-mb", "redis_disk_mb", "ratelimiter: put Redis's data on a tmpfs of this size, with save "
             "points, so that the redis_disk_full fault can fill it (with --docker: the container's tmpfs, "
             "default 32)", metavar="MB", type=int),
        Flag("--docker", "docker", "ratelimiter: run the lab as containers (DOCKER_HOST, default: the project's "
             "local engine, scripts/dockerd.sh)", store_true=True),
    ),
)
