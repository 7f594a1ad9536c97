#!/usr/bin/env bash
# Ensure a Docker daemon answers `docker info`: installs Debian's docker.io if missing and starts dockerd detached.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DEADLINE_SECONDS="${ADR_DOCKERD_DEADLINE:-90}"
DOCKERD_LOG="${ADR_DOCKERD_LOG:-/var/log/adr-dockerd.log}"
LOCK_FILE="/var/lock/adr-ensure-docker.lock"

log() { echo "ensure-docker: $*" >&2; }
die() { echo "ensure-docker: ERROR: $*" >&2; exit 1; }

docker_answers() { timeout 15 docker info >/dev/null 2>&1; }

# The docker CLI in /usr/local/bin may be newer than Debian's daemon. Modern CLIs negotiate the
# API version down automatically; only pin DOCKER_API_VERSION if the daemon rejects the client.
check_api_negotiation() {
    local out
    if out="$(timeout 15 docker version --format '{{.Client.APIVersion}} {{.Server.APIVersion}}' 2>&1)"; then
        log "docker CLI/daemon API versions (client negotiated, server): ${out}"
        return 0
    fi
    if grep -qi 'too new' <<<"${out}"; then
        local server_api
        server_api="$(DOCKER_API_VERSION=1.24 timeout 15 docker version --format '{{.Server.APIVersion}}' 2>/dev/null || true)"
        die "docker CLI is too new for the daemon and did not negotiate; run with: export DOCKER_API_VERSION=${server_api:-<daemon API version>}"
    fi
    die "docker version failed: ${out}"
}

if docker_answers; then
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    die "no Docker daemon answers and starting one needs root (run as root or start dockerd yourself)"
fi

# Serialise concurrent invocations so only one dockerd gets started.
exec 9>"${LOCK_FILE}"
flock -w "${DEADLINE_SECONDS}" 9 || die "timed out waiting for lock ${LOCK_FILE}"
if docker_answers; then
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    log "installing docker.io (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq docker.io >/dev/null || die "apt-get install docker.io failed"
    command -v dockerd >/dev/null 2>&1 || die "dockerd still not found after installing docker.io"
fi

dockerd_pid=""
if [[ -s /var/run/docker.pid ]] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    dockerd_pid="$(cat /var/run/docker.pid)"
    log "dockerd already running (pid ${dockerd_pid}) but not answering yet; waiting for it"
else
    log "starting dockerd (log: ${DOCKERD_LOG})"
    mkdir -p "$(dirname "${DOCKERD_LOG}")"
    # setsid+nohup: new session, immune to SIGHUP, so the daemon outlives this script and its terminal.
    # 9>&- : the daemon must not inherit (and hold forever) our lock.
    setsid nohup dockerd >>"${DOCKERD_LOG}" 2>&1 </dev/null 9>&- &
    dockerd_pid=$!
    disown "${dockerd_pid}" 2>/dev/null || true
fi

dockerd_alive() {  # our pid, or (should setsid have forked) the pid dockerd wrote itself
    kill -0 "${dockerd_pid}" 2>/dev/null \
        || { [[ -s /var/run/docker.pid ]] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }
}

deadline=$((SECONDS + DEADLINE_SECONDS))
until docker_answers; do
    if ! dockerd_alive; then
        log "dockerd (pid ${dockerd_pid}) exited; last lines of ${DOCKERD_LOG}:"
        tail -n 30 "${DOCKERD_LOG}" >&2 || true
        die "dockerd failed to start"
    fi
    if ((SECONDS >= deadline)); then
        log "last lines of ${DOCKERD_LOG}:"
        tail -n 30 "${DOCKERD_LOG}" >&2 || true
        log "last 'docker info' error: $(timeout 15 docker info 2>&1 >/dev/null | tail -n 1)"
        die "docker info did not answer within ${DEADLINE_SECONDS}s"
    fi
    sleep 0.5  # poll interval, bounded by the deadline above
done

check_api_negotiation
log "dockerd is up (pid ${dockerd_pid}, $(docker info --format '{{.ServerVersion}} storage={{.Driver}} cgroup={{.CgroupVersion}}' 2>/dev/null))"
