#!/usr/bin/env bash
# The project's own Docker engine: dockerd on its own socket, data root, exec root and pid file,
# all under one folder, never the system's default socket. No bridge and no iptables rules of its
# own: containers use host networking and listen on their own 127.x.y.z addresses.
#
#   scripts/dockerd.sh start    start it (no-op when it already runs); waits until it answers
#   scripts/dockerd.sh stop     stop it; leaves no process and no mount under the folder
#   scripts/dockerd.sh status   exit 0 when it runs and answers, 3 when not (prints which)
#   scripts/dockerd.sh env      print `export DOCKER_HOST=unix://.../docker.sock`
#
# Folder: $OPERATOR_TUI_DOCKER_DIR, default /var/lib/operator-tui/docker. Needs root (dockerd does).
set -euo pipefail

DIR=${OPERATOR_TUI_DOCKER_DIR:-/var/lib/operator-tui/docker}
SOCK="$DIR/docker.sock"
PIDFILE="$DIR/docker.pid"
OURS="$DIR/dockerd.ours"   # "PID STARTTIME" of the dockerd this script started: a reused pid is never signalled
LOG="$DIR/dockerd.log"
START_TIMEOUT=${OPERATOR_TUI_DOCKER_START_TIMEOUT:-60}
STOP_TIMEOUT=30

usage() { echo "usage: $0 start|stop|status|env" >&2; exit 2; }
die() { echo "dockerd.sh: $*" >&2; exit 1; }

starttime_of() {  # field 22 of /proc/PID/stat (the command name may hold spaces: cut after ')')
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  echo "$stat" | awk '{print $20}'
}

our_pid() {  # prints the pid of the dockerd we started, if it still runs
  local pid want have
  [ -f "$OURS" ] && read -r pid want <"$OURS" || return 1
  [ -n "$pid" ] && have=$(starttime_of "$pid") || return 1
  [ "$have" = "$want" ] || return 1
  grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null && return 1
  echo "$pid"
}

answers() {
  [ -S "$SOCK" ] && curl -sf --max-time 3 --unix-socket "$SOCK" http://localhost/_ping >/dev/null 2>&1
}

unmount_all() {  # every mount below the folder, deepest first (overlays, shm, the netns nsfs)
  local m
  { findmnt -rn -o TARGET | grep -E "^${DIR}(/|$)" || true; } | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

start() {
  if our_pid >/dev/null && answers; then
    echo "dockerd already running (pid $(our_pid)), DOCKER_HOST=unix://$SOCK"
    return 0
  fi
  command -v dockerd >/dev/null || die "dockerd is not installed (Debian: apt-get install docker.io; scripts/setup.sh does it)"
  command -v curl >/dev/null || die "curl is not installed (Debian: apt-get install curl)"
  [ "$(id -u)" -eq 0 ] || die "dockerd needs root"
  if pid=$(our_pid); then  # running but not answering: a wedged engine is restarted
    echo "dockerd (pid $pid) does not answer on $SOCK: restarting it"
    stop
  fi
  mkdir -p "$DIR/root" "$DIR/exec"
  rm -f "$SOCK" "$PIDFILE" "$OURS"
  # setsid: the engine outlives this script and the shell that ran it.
  setsid dockerd \
    --data-root "$DIR/root" --exec-root "$DIR/exec" -H "unix://$SOCK" --pidfile "$PIDFILE" \
    --iptables=false --ip6tables=false --ip-masq=false --bridge=none --userland-proxy=false \
    --storage-driver overlay2 --log-driver json-file --log-opt max-size=10m \
    </dev/null >>"$LOG" 2>&1 &
  local pid=$!
  local deadline=$((SECONDS + START_TIMEOUT))
  local st=""
  for _ in $(seq 100); do st=$(starttime_of "$pid") && break; sleep 0.05; done
  [ -n "$st" ] || die "dockerd exited at once; last lines of $LOG: $(tail -n 5 "$LOG" | tr '\n' ' ')"
  echo "$pid $st" >"$OURS"
  until answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      unmount_all
      die "dockerd exited at start; last lines of $LOG: $(tail -n 5 "$LOG" | tr '\n' ' ')"
    fi
    if [ $SECONDS -ge $deadline ]; then
      stop >/dev/null 2>&1 || true
      die "dockerd did not answer on $SOCK within ${START_TIMEOUT}s; see $LOG"
    fi
    sleep 0.2
  done
  echo "dockerd started (pid $pid), DOCKER_HOST=unix://$SOCK"
}

stop() {
  local pid
  if pid=$(our_pid); then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while our_pid >/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if our_pid >/dev/null; then
      echo "dockerd (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
    fi
    # Its containerd and shims run in the engine's exec root; a SIGKILLed engine can leave them.
    local p
    for p in $(pgrep -f -- "$DIR/exec" || true); do kill -KILL "$p" 2>/dev/null || true; done
    echo "dockerd stopped (pid $pid)"
  else
    echo "dockerd not running"
  fi
  unmount_all
  rm -f "$SOCK" "$PIDFILE" "$OURS"
  local left
  left=$(findmnt -rn -o TARGET | grep -E "^${DIR}(/|$)" || true)
  [ -z "$left" ] || die "mounts left under $DIR: $left"
}

status() {
  local pid
  if pid=$(our_pid) && answers; then
    echo "running (pid $pid), DOCKER_HOST=unix://$SOCK"
  elif pid=$(our_pid); then
    echo "dockerd (pid $pid) runs but does not answer on $SOCK"
    return 3
  else
    echo "not running (folder $DIR)"
    return 3
  fi
}

[ $# -eq 1 ] || usage
case "$1" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export DOCKER_HOST=unix://$SOCK" ;;
  -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) usage ;;
esac
