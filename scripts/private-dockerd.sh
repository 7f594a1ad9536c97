#!/usr/bin/env bash
# A private second Docker daemon for the fault tests, which stop and restart it: never the daemon other tests use.
#
#   scripts/private-dockerd.sh start [--live-restore]   start it (idempotent: a running one with the same
#                                                        live-restore setting is kept), load adr-test/base
#   scripts/private-dockerd.sh stop                     stop it (SIGTERM, as systemd would); its data root stays
#   scripts/private-dockerd.sh clean                    stop it, remove its containers' traces and its bridge
#
# Its own socket, data root, exec root, pid file and bridge (adrfault0, 172.31.254.1/24, no iptables, no
# masquerading): `--bridge=none` would delete docker0 and break the main daemon. The data root is kept
# between runs as a cache of the test image (about 400 MB); `clean` leaves it too, `rm -rf` it to reclaim.
set -euo pipefail

BASE="${ADR_PRIVATE_DOCKERD_DIR:-/run/adr-private-dockerd}"
DATA_ROOT="${ADR_PRIVATE_DOCKERD_DATA:-/var/lib/adr-private-dockerd}"
SOCK="$BASE/docker.sock"
PIDFILE="$BASE/docker.pid"
LOG="$BASE/dockerd.log"
BRIDGE=adrfault0
BRIDGE_CIDR=172.31.254.1/24
IMAGE="${ADR_PRIVATE_DOCKERD_IMAGE:-adr-test/base:latest}"
HOST="unix://$SOCK"

log() { echo "private-dockerd: $*" >&2; }
die() { log "$*"; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (it starts dockerd)"

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
answers() {  # the daemon's live-restore setting, or nothing when it does not answer
    local out; out="$(docker -H "$HOST" info --format '{{.ServerVersion}} {{.LiveRestoreEnabled}}' 2>/dev/null)" || return 0
    [ "${out%% *}" != "" ] && echo "${out##* }"
}

stop() {
    running || { rm -f "$PIDFILE"; return 0; }
    local pid; pid="$(cat "$PIDFILE")"
    kill -TERM "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "dockerd $pid did not stop in 30 s; killing it"; kill -KILL "$pid"; sleep 1; }
    rm -f "$PIDFILE"
}

start() {
    local live=false
    [ "${1:-}" = "--live-restore" ] && live=true
    if running && [ "$(answers)" = "$live" ]; then
        return 0
    fi
    stop
    mkdir -p "$BASE" "$DATA_ROOT"
    echo '{}' >"$BASE/daemon.json"  # never the host's /etc/docker/daemon.json
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
        ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
        ip link set "$BRIDGE" up
    fi
    local flags=(--host "$HOST" --data-root "$DATA_ROOT" --exec-root "$BASE/exec" --pidfile "$PIDFILE"
                 --bridge "$BRIDGE" --iptables=false --ip-masq=false --ip6tables=false --cgroup-parent adr-private
                 --config-file "$BASE/daemon.json")
    $live && flags+=(--live-restore)
    setsid nohup dockerd "${flags[@]}" >>"$LOG" 2>&1 </dev/null &
    for _ in $(seq 1 300); do
        [ -n "$(answers)" ] && break
        sleep 0.1
    done
    [ -n "$(answers)" ] || { tail -20 "$LOG" >&2; die "dockerd did not answer at $HOST within 30 s"; }
    local want have
    want="$(docker image inspect --format '{{.Id}}' "$IMAGE")"
    have="$(docker -H "$HOST" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
    if [ "$want" != "$have" ]; then
        log "loading $IMAGE into the private daemon"
        docker save "$IMAGE" | docker -H "$HOST" load -q >&2
    fi
}

clean() {
    if running; then
        docker -H "$HOST" ps -aq | xargs -r docker -H "$HOST" rm -f >/dev/null 2>&1 || true
    fi
    stop
    ip link del "$BRIDGE" 2>/dev/null || true
}

case "${1:-}" in
    start) shift; start "$@"; echo "$HOST" ;;
    stop) stop ;;
    clean) clean ;;
    *) die "usage: $0 start [--live-restore] | stop | clean" ;;
esac
