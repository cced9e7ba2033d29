#!/usr/bin/env bash
# Sets up a fresh machine for operator-tui: Debian packages (if missing) and a virtualenv in .venv.
# Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# redis-server: the rate limiter subject; prometheus: the TiKV Prometheus path; bubblewrap: the
# agent's shell sandbox; iptables/iproute2: network faults; sqlite3: inspecting the store; tmux: console tests;
# docker.io/docker-compose/debootstrap/curl: the project's own Docker engine, its images and compose files;
# etcd-server/etcd-client: the etcd subject's lab (etcdctl checks backups); strace: its slow-disk fault;
# openssl: the TLS tests' certificates; util-linux: unshare (the operator as PID 1 in a fresh PID namespace).
DEBS=(redis-server redis-tools prometheus bubblewrap iptables iproute2 sqlite3 tmux procps
      docker.io docker-compose debootstrap curl etcd-server etcd-client strace openssl util-linux)
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'

# The local Docker engine's images, cached in its data root (a second run builds nothing). The
# engine runs only for the build unless it was already running; the tests and labs start it again.
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
engine_was_up=yes
$SUDO scripts/dockerd.sh status >/dev/null || { engine_was_up=no; $SUDO scripts/dockerd.sh start; }
build_ok=yes
$SUDO env -u DOCKER_HOST .venv/bin/python -m containers.images build || build_ok=no
[ "$engine_was_up" = yes ] || $SUDO scripts/dockerd.sh stop >/dev/null
[ "$build_ok" = yes ] || { echo "setup: building the Docker images failed" >&2; exit 1; }
echo "setup: ready (.venv)"
