#!/usr/bin/env bash
# Ensure a Redis server answers PING on 127.0.0.1:6379 (installs/starts Debian's redis-server); prints its URL.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

REDIS_HOST=127.0.0.1
REDIS_PORT=6379
DEADLINE_SECONDS="${ADR_REDIS_DEADLINE:-30}"
URL="redis://${REDIS_HOST}:${REDIS_PORT}/0"

log() { echo "ensure-redis: $*" >&2; }
die() { echo "ensure-redis: ERROR: $*" >&2; exit 1; }

answers() { [[ "$(timeout 5 redis-cli -h "${REDIS_HOST}" -p "${REDIS_PORT}" ping 2>/dev/null)" == PONG ]]; }

if command -v redis-cli >/dev/null 2>&1 && answers; then
    echo "${URL}"
    exit 0
fi

[[ "$(id -u)" -eq 0 ]] || die "no Redis answers on ${REDIS_HOST}:${REDIS_PORT} and starting one needs root"

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    log "installing redis-server (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq redis-server >/dev/null || die "apt-get install redis-server failed"
fi

if ! answers; then  # (the package's postinst may already have started one)
    log "starting redis-server on ${REDIS_HOST}:${REDIS_PORT}"
    # --dir: otherwise redis would drop dump.rdb into the current directory (the repo).
    data_dir=/var/lib/redis
    log_file=/var/log/redis/adr-redis-server.log
    run_as=()
    if id redis >/dev/null 2>&1; then
        install -d -o redis -g redis "${data_dir}"
        install -d -o redis -g adm "$(dirname "${log_file}")" 2>/dev/null || install -d -o redis "$(dirname "${log_file}")"
        run_as=(runuser -u redis --)
    else
        mkdir -p "${data_dir}" "$(dirname "${log_file}")"
    fi
    "${run_as[@]}" redis-server --daemonize yes --bind "${REDIS_HOST}" --port "${REDIS_PORT}" \
        --dir "${data_dir}" --logfile "${log_file}" \
        || { tail -n 20 "${log_file}" >&2 || true; die "redis-server failed to start"; }
fi

deadline=$((SECONDS + DEADLINE_SECONDS))
until answers; do
    if ((SECONDS >= deadline)); then
        tail -n 20 /var/log/redis/adr-redis-server.log >&2 || true
        die "Redis did not answer PING on ${REDIS_HOST}:${REDIS_PORT} within ${DEADLINE_SECONDS}s"
    fi
    sleep 0.2  # poll interval, bounded by the deadline above
done

log "Redis is up on ${REDIS_HOST}:${REDIS_PORT}"
echo "${URL}"
