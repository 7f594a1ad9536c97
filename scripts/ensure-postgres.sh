#!/usr/bin/env bash
# Ensure PostgreSQL answers on 127.0.0.1:5432 with role/database airflow (password airflow); prints the SQLAlchemy URL.
# The role may create databases: each test suite and the benchmark use their own (tests/support/stack.py pg_database).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PG_HOST=127.0.0.1
PG_PORT=5432
DB_USER=airflow
DB_PASSWORD=airflow
DB_NAME=airflow
DEADLINE_SECONDS="${ADR_POSTGRES_DEADLINE:-60}"
URL="postgresql+psycopg2://${DB_USER}:${DB_PASSWORD}@${PG_HOST}:${PG_PORT}/${DB_NAME}"

log() { echo "ensure-postgres: $*" >&2; }
die() { echo "ensure-postgres: ERROR: $*" >&2; exit 1; }

answers() { pg_isready -q -h "${PG_HOST}" -p "${PG_PORT}" -t 2; }
app_login_works() {
    PGPASSWORD="${DB_PASSWORD}" PGCONNECT_TIMEOUT=5 psql -X -q -h "${PG_HOST}" -p "${PG_PORT}" -U "${DB_USER}" \
        -d "${DB_NAME}" -tAc 'SELECT 1 FROM pg_roles WHERE rolname = current_user AND rolcreatedb' 2>/dev/null | grep -qx 1
}
as_superuser() {  # psql as the postgres superuser over the local socket (peer auth)
    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "${PG_PORT}" "$@"
}

ensure_role_and_db() {
    if app_login_works; then
        return 0
    fi
    id postgres >/dev/null 2>&1 \
        || die "a server answers on ${PG_HOST}:${PG_PORT} but ${DB_USER}/${DB_NAME} does not work and there is no local postgres superuser to fix it"
    [[ "$(id -u)" -eq 0 ]] || die "creating role/database needs root (runuser -u postgres)"
    if [[ "$(as_superuser -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = '${DB_USER}'")" != 1 ]]; then
        log "creating role ${DB_USER}"
        as_superuser -d postgres -c "CREATE ROLE ${DB_USER} LOGIN CREATEDB PASSWORD '${DB_PASSWORD}'"
    else
        as_superuser -d postgres -c "ALTER ROLE ${DB_USER} LOGIN CREATEDB PASSWORD '${DB_PASSWORD}'"
    fi
    if [[ "$(as_superuser -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '${DB_NAME}'")" != 1 ]]; then
        log "creating database ${DB_NAME} owned by ${DB_USER}"
        as_superuser -d postgres -c "CREATE DATABASE ${DB_NAME} OWNER ${DB_USER}"
    fi
    app_login_works || die "cannot log in as ${DB_USER} (with CREATEDB) to ${DB_NAME} on ${PG_HOST}:${PG_PORT} (check pg_hba.conf)"
}

if command -v pg_isready >/dev/null 2>&1 && answers; then
    ensure_role_and_db
    echo "${URL}"
    exit 0
fi

[[ "$(id -u)" -eq 0 ]] || die "no PostgreSQL answers on ${PG_HOST}:${PG_PORT} and starting one needs root"

if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! command -v pg_isready >/dev/null 2>&1; then
    log "installing postgresql (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq postgresql >/dev/null || die "apt-get install postgresql failed"
fi

# The cluster on port 5432 (Debian creates <version>/main on install; create it if it was dropped).
cluster="$(pg_lsclusters --no-header 2>/dev/null | awk -v port="${PG_PORT}" '$3 == port { print $1, $2; exit }')"
if [[ -z "${cluster}" ]]; then
    version="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n1)"
    [[ -n "${version}" ]] || die "no PostgreSQL server binaries under /usr/lib/postgresql"
    if pg_lsclusters --no-header 2>/dev/null | awk -v v="${version}" '$1 == v && $2 == "main" { f = 1 } END { exit !f }'; then
        die "cluster ${version}/main exists but does not use port ${PG_PORT}; see pg_lsclusters"
    fi
    log "creating cluster ${version}/main on port ${PG_PORT}"
    pg_createcluster --port "${PG_PORT}" "${version}" main >/dev/null
    cluster="${version} main"
fi
read -r version name <<<"${cluster}"

if ! answers; then
    log "starting cluster ${version}/${name}"
    pg_ctlcluster "${version}" "${name}" start \
        || { tail -n 20 "/var/log/postgresql/postgresql-${version}-${name}.log" >&2 || true; die "pg_ctlcluster ${version} ${name} start failed"; }
fi

deadline=$((SECONDS + DEADLINE_SECONDS))
until answers; do
    if ((SECONDS >= deadline)); then
        tail -n 20 "/var/log/postgresql/postgresql-${version}-${name}.log" >&2 || true
        die "PostgreSQL did not answer on ${PG_HOST}:${PG_PORT} within ${DEADLINE_SECONDS}s"
    fi
    sleep 0.2  # poll interval, bounded by the deadline above
done

ensure_role_and_db
log "PostgreSQL ${version}/${name} is up on ${PG_HOST}:${PG_PORT}"
echo "${URL}"
