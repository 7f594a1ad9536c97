#!/usr/bin/env bash
# Build the offline test images adr-test/base, adr-test/dep-v1 and adr-test/dep-v2 (cached by an input-hash label).
set -euo pipefail
CALLER_PWD="$(pwd)"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"
SCRIPT_PATH="${REPO_ROOT}/scripts/build-images.sh"

# ---------------------------------------------------------------------------------------------
# Settings (all overridable from the environment)
# ---------------------------------------------------------------------------------------------
# Host venv python, the source of the Airflow versions. Default: .venv/bin/python under the repo root;
# a relative PYTHON given by the caller is taken relative to the caller's directory.
if [[ -n "${PYTHON:-}" && "${PYTHON}" != /* ]]; then PYTHON="${CALLER_PWD}/${PYTHON}"; fi
PYTHON="${PYTHON:-.venv/bin/python}"
CACHE_DIR="${ADR_IMAGE_CACHE_DIR:-${REPO_ROOT}/.cache/images}"  # gitignored build cache
SUITE="bookworm"
DEBOOTSTRAP_INCLUDE="python3,python3-venv,ca-certificates"
HOST_CA_BUNDLE="${ADR_HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
PIN_TRANSITIVE="${ADR_PIN_TRANSITIVE:-1}"                 # 1: pin Airflow's dependency closure to host versions
VENV_DIR="/opt/airflow/venv"
IMAGE_PATH_ENV="${VENV_DIR}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLEAN_PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_IMAGE="adr-test/base:latest"
HASH_LABEL="adr.inputs-hash"
TESTDEP_SRC="${REPO_ROOT}/tests/images/testdep"
STDLIB_DIR="/usr/lib/python3.11"                          # bookworm's python3
# What a task child and a parse child import at start (checked to load from bytecode only).
CHILD_IMPORTS="import airflow.sdk.execution_time.supervisor, airflow.sdk.execution_time.task_runner, airflow.dag_processing.processor"
AIRFLOW_DISTS=(apache-airflow-core apache-airflow-task-sdk apache-airflow-providers-standard)

log() { echo "build-images: $*" >&2; }
die() { echo "build-images: ERROR: $*" >&2; exit 1; }
now() { echo "${EPOCHREALTIME}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

[[ "$(id -u)" -eq 0 ]] || die "must run as root (debootstrap, chroot and dockerd need it)"
[[ "${PYTHON}" = /* ]] || PYTHON="${REPO_ROOT}/${PYTHON}"
[[ -x "${PYTHON}" ]] || die "host venv python not found: ${PYTHON} (set PYTHON=/path/to/venv/bin/python)"
[[ -r "${HOST_CA_BUNDLE}" ]] || die "host CA bundle not readable: ${HOST_CA_BUNDLE}"
[[ -f "${TESTDEP_SRC}/pyproject.toml" ]] || die "missing ${TESTDEP_SRC}/pyproject.toml"

# ---------------------------------------------------------------------------------------------
# Tools: docker.io + debootstrap (apt-get update once, only if something is missing), dockerd up.
# ---------------------------------------------------------------------------------------------
if ! command -v debootstrap >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1 \
    || ! command -v docker >/dev/null 2>&1; then
    log "installing docker.io and debootstrap (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq docker.io debootstrap >/dev/null || die "apt-get install docker.io debootstrap failed"
fi
"${REPO_ROOT}/scripts/ensure-docker.sh" || die "Docker daemon is not available"

mkdir -p "${CACHE_DIR}"
exec 9>"${CACHE_DIR}/.lock"
flock -w 1800 9 || die "another build-images.sh holds ${CACHE_DIR}/.lock"

# ---------------------------------------------------------------------------------------------
# Temp dirs and cleanup. The chroot never gets anything mounted into it, so removing it with
# --one-file-system is safe even after an interrupted run.
# ---------------------------------------------------------------------------------------------
WORK_DIR=""
cleanup() {
    if [[ -n "${WORK_DIR}" && -d "${WORK_DIR}" ]]; then
        rm -rf --one-file-system "${WORK_DIR}"
    fi
}
trap cleanup EXIT
new_work_dir() {
    mkdir -p "${CACHE_DIR}/tmp"
    WORK_DIR="$(mktemp -d "${CACHE_DIR}/tmp/build.XXXXXX")"
}
# Leftovers of killed runs (we hold the lock, so nothing else uses them).
if [[ -d "${CACHE_DIR}/tmp" ]]; then
    rm -rf --one-file-system "${CACHE_DIR}/tmp"
fi

sha256_of_stdin() { sha256sum | cut -d' ' -f1; }

image_label() {  # image label -> value ("" if image or label missing)
    docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null | sed 's/^<no value>$//' || true
}
image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

OLD_IMAGE_IDS=()
remember_old_image() {  # so the replaced image does not linger as <none> (removed at the end)
    local id
    id="$(image_id "$1")"
    if [[ -n "${id}" ]]; then OLD_IMAGE_IDS+=("${id}"); fi
}

# ---------------------------------------------------------------------------------------------
# Inputs: Airflow versions from the host venv (never hard-coded), Debian mirror from apt sources.
# ---------------------------------------------------------------------------------------------
# Prints "name==version" for the three Airflow distributions, then (if pinning) a line "--" and
# the installed versions of their runtime dependency closure, so the image matches the host.
read_host_versions() {
    "${PYTHON}" - "${PIN_TRANSITIVE}" "${AIRFLOW_DISTS[@]}" <<'PY'
import importlib.metadata as md
import json
import re
import sys

pin_transitive = sys.argv[1] == "1"
roots = sys.argv[2:]


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


for root in roots:
    try:
        print(f"{root}=={md.version(root)}")
    except md.PackageNotFoundError:
        sys.exit(f"{root} is not installed in {sys.executable}")

if not pin_transitive:
    sys.exit(0)
try:
    from packaging.requirements import Requirement
except ImportError:  # no packaging: install only the three pins
    sys.exit(0)

print("--")
seen = {}
stack = list(roots)
while stack:
    name = norm(stack.pop())
    if name in seen:
        continue
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        continue
    seen[name] = dist
    for raw in dist.requires or []:
        req = Requirement(raw)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        stack.append(req.name)

for name in sorted(seen):
    if name in {norm(r) for r in roots}:
        continue
    dist = seen[name]
    version = dist.version
    direct_url = dist.read_text("direct_url.json")
    if "+" in version or (direct_url and "dir_info" in json.loads(direct_url)):
        continue  # local build / editable / path install: not on an index, do not pin
    print(f"{name}=={version}")
PY
}

detect_mirror() {
    if [[ -n "${ADR_DEBIAN_MIRROR:-}" ]]; then
        echo "${ADR_DEBIAN_MIRROR}"
        return
    fi
    local f uri=""
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -e "${f}" ]] || continue
        # deb822 stanzas: first URI of a "Types: deb" stanza whose Suites contain exactly $SUITE.
        uri="$(awk -v suite="${SUITE}" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "") {
                    split(uris, u, " "); print u[1]; found = 1; exit
                }
                types = ""; suites = ""; uris = ""
            }
            /^[[:space:]]*#/ { next }
            /^[[:space:]]*$/ { flush(); next }
            tolower($1) == "types:"  { $1 = ""; types = $0 }
            tolower($1) == "suites:" { $1 = ""; suites = $0 }
            tolower($1) == "uris:"   { $1 = ""; uris = $0 }
            END { if (!found) flush() }
        ' "${f}")"
        [[ -n "${uri}" ]] && break
    done
    if [[ -z "${uri}" ]]; then
        uri="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | sed -e 's/#.*//' -e 's/\[[^]]*\]//' \
            | awk -v suite="${SUITE}" '$1 == "deb" && $3 == suite { print $2; exit }')"
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

HOST_VERSIONS="$(read_host_versions)" || die "could not read Airflow versions from ${PYTHON}"
AIRFLOW_PINS="$(sed '/^--$/,$d' <<<"${HOST_VERSIONS}")"
CLOSURE_PINS="$(sed -n '/^--$/,$p' <<<"${HOST_VERSIONS}" | sed '1d')"
MIRROR="$(detect_mirror)"
SCRIPT_HASH="$(sha256_of_stdin <"${SCRIPT_PATH}")"
TESTDEP_HASH="$(cd "${TESTDEP_SRC}" && find . -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' \
    ! -path './build/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256_of_stdin)"

# ---------------------------------------------------------------------------------------------
# Debian rootfs (cached as a tarball keyed by the debootstrap parameters only, so editing this
# script rebuilds the venv but not the ~40 s debootstrap).
# ---------------------------------------------------------------------------------------------
ROOTFS_KEY="$(printf '%s\n' "${SUITE}" minbase "${DEBOOTSTRAP_INCLUDE}" "${MIRROR}" "$(dpkg --print-architecture)" \
    | sha256_of_stdin | cut -c1-16)"
ROOTFS_TAR="${CACHE_DIR}/rootfs-${SUITE}-minbase-${ROOTFS_KEY}.tar"

ensure_rootfs_tar() {
    if [[ -s "${ROOTFS_TAR}" ]]; then
        return
    fi
    local t0 dir
    t0="$(now)"
    dir="${WORK_DIR}/debootstrap"
    log "debootstrap ${SUITE} from ${MIRROR} (log: ${CACHE_DIR}/debootstrap.log)"
    if ! debootstrap --variant=minbase --include="${DEBOOTSTRAP_INCLUDE}" "${SUITE}" "${dir}" "${MIRROR}" \
        >"${CACHE_DIR}/debootstrap.log" 2>&1; then
        tail -n 30 "${CACHE_DIR}/debootstrap.log" >&2 || true
        [[ -f "${dir}/debootstrap/debootstrap.log" ]] && tail -n 30 "${dir}/debootstrap/debootstrap.log" >&2
        die "debootstrap failed"
    fi
    # Drop downloaded .debs and apt lists before caching; they are never needed again.
    rm -rf "${dir}/var/cache/apt/archives/"*.deb "${dir}/var/lib/apt/lists/"*
    tar --numeric-owner -C "${dir}" -cf "${ROOTFS_TAR}.part" . || die "could not archive rootfs"
    mv -f "${ROOTFS_TAR}.part" "${ROOTFS_TAR}"
    rm -f "${CACHE_DIR}"/rootfs-"${SUITE}"-minbase-*.tar.part
    find "${CACHE_DIR}" -maxdepth 1 -name "rootfs-${SUITE}-minbase-*.tar" ! -name "$(basename "${ROOTFS_TAR}")" -delete
    rm -rf --one-file-system "${dir}"
    log "debootstrap done in $(elapsed "${t0}")"
}

in_chroot() {  # run a command in the chroot with a clean environment
    env -i PATH="${CLEAN_PATH}" HOME=/root LANG=C.UTF-8 \
        ${http_proxy:+http_proxy="${http_proxy}"} ${https_proxy:+https_proxy="${https_proxy}"} \
        ${HTTP_PROXY:+HTTP_PROXY="${HTTP_PROXY}"} ${HTTPS_PROXY:+HTTPS_PROXY="${HTTPS_PROXY}"} \
        ${no_proxy:+no_proxy="${no_proxy}"} ${NO_PROXY:+NO_PROXY="${NO_PROXY}"} \
        /usr/sbin/chroot "${ROOT}" "$@"
}

build_base() {
    local hash="$1"
    ensure_rootfs_tar
    ROOT="${WORK_DIR}/rootfs"
    mkdir -p "${ROOT}"
    tar --numeric-owner -C "${ROOT}" -xf "${ROOTFS_TAR}"

    # Networking and TLS for pip inside the chroot: host resolver config + a copy of the host CA bundle.
    cp -L /etc/resolv.conf "${ROOT}/etc/resolv.conf"
    cp -L /etc/hosts "${ROOT}/etc/hosts"
    cp -L "${HOST_CA_BUNDLE}" "${ROOT}/tmp/host-ca-bundle.crt"
    printf '%s\n' "${AIRFLOW_PINS}" >"${ROOT}/tmp/requirements.txt"
    printf '%s\n' "${CLOSURE_PINS}" >"${ROOT}/tmp/constraints.txt"

    log "installing $(tr '\n' ' ' <<<"${AIRFLOW_PINS}")into ${VENV_DIR} (chroot pip, $(grep -c . <<<"${CLOSURE_PINS}" || true) transitive pins)"
    in_chroot /usr/bin/python3 -m venv "${VENV_DIR}"
    if ! in_chroot "${VENV_DIR}/bin/pip" install --no-cache-dir --disable-pip-version-check --no-input \
        --progress-bar off --cert /tmp/host-ca-bundle.crt \
        -r /tmp/requirements.txt -c /tmp/constraints.txt >"${CACHE_DIR}/pip-base.log" 2>&1; then
        tail -n 40 "${CACHE_DIR}/pip-base.log" >&2 || true
        die "pip install inside the chroot failed (full log: ${CACHE_DIR}/pip-base.log)"
    fi
    in_chroot "${VENV_DIR}/bin/python" -c 'import airflow.sdk, airflow.providers.standard' \
        || die "Airflow does not import inside the chroot"

    # Bytecode for everything the container's Python can import (the venv, the standard library, Debian's
    # dist-packages), written now, as root: a container never compiles a module at start. pip and Debian's
    # py3compile already write most of it; this makes it complete and explicit, because a container that
    # finds a missing or stale .pyc compiles the module in memory at every start and, running as a
    # non-root user, cannot write __pycache__ to keep it. Timestamp mode (pip's and Debian's), forced so a
    # SOURCE_DATE_EPOCH in the environment cannot switch it to checked-hash (which reads every source).
    log "compiling bytecode (venv, standard library)"
    in_chroot "${VENV_DIR}/bin/python" -m compileall -q -j 0 --invalidation-mode timestamp \
        "${VENV_DIR}/lib" "${STDLIB_DIR}" /usr/lib/python3/dist-packages >"${CACHE_DIR}/compileall.log" 2>&1 \
        || { tail -n 40 "${CACHE_DIR}/compileall.log" >&2; die "compileall inside the chroot failed"; }

    # Like the official apache/airflow images: user airflow, uid 50000, primary group root (gid 0).
    in_chroot /usr/sbin/useradd --uid 50000 --gid 0 --home-dir /home/airflow --create-home \
        --shell /bin/bash airflow

    # Check it as that user: what a task child and a parse child import must all come from .pyc files
    # (`python -v` says "code object from '<file>.py'" for a module compiled from source).
    local compiled verbose="${CACHE_DIR}/import-verbose.log"
    env -i PATH="${CLEAN_PATH}" HOME=/home/airflow LANG=C.UTF-8 AIRFLOW_HOME=/tmp/adr-pyc-check \
        /usr/sbin/chroot --userspec=50000:0 "${ROOT}" "${VENV_DIR}/bin/python" -v -c "${CHILD_IMPORTS}" \
        >"${verbose}" 2>&1 || { tail -n 20 "${verbose}" >&2; die "the child imports fail as uid 50000"; }
    rm -rf "${ROOT}/tmp/adr-pyc-check"
    compiled="$(grep -E "^# code object from '.*\.py'$" "${verbose}" || true)"
    [[ -z "${compiled}" ]] || die "modules compiled from source at import (no valid .pyc): ${compiled}"
    grep -q "^# code object from '.*\.pyc'$" "${verbose}" || die "python -v output not understood (${verbose})"

    # Keep it small and free of host details.
    rm -f "${ROOT}/tmp/host-ca-bundle.crt" "${ROOT}/tmp/requirements.txt" "${ROOT}/tmp/constraints.txt"
    rm -rf "${ROOT}/root/.cache" "${ROOT}/home/airflow/.cache" "${ROOT}/var/cache/apt/archives/"*.deb \
        "${ROOT}/var/cache/apt/"*.bin "${ROOT}/var/lib/apt/lists/"* "${ROOT}/usr/share/doc/"* \
        "${ROOT}/usr/share/man/"* "${ROOT}/usr/share/info/"* "${ROOT}/var/log/"*.log
    : >"${ROOT}/etc/resolv.conf"   # docker provides its own at run time
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"${ROOT}/etc/hosts"

    remember_old_image "${BASE_IMAGE}"
    tar --numeric-owner -C "${ROOT}" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -c . \
        | docker import \
            --change "ENV PATH=${IMAGE_PATH_ENV}" \
            --change "ENV PYTHONUNBUFFERED=1" \
            --change "WORKDIR /" \
            --change "LABEL ${HASH_LABEL}=${hash}" \
            - "${BASE_IMAGE}" >/dev/null \
        || die "docker import failed"
    rm -rf --one-file-system "${ROOT}"
}

build_testdep_image() {  # version tag hash
    local version="$1" image="$2" hash="$3" ctx src
    ctx="${WORK_DIR}/dep-${version}"
    src="${ctx}/src"
    mkdir -p "${ctx}"
    cp -a "${TESTDEP_SRC}" "${src}"
    rm -rf "${src}/build" "${src}"/*.egg-info
    printf '# Generated by scripts/build-images.sh\n__version__ = "%s"\n' "${version}" >"${src}/adr_testdep/_version.py"

    # Wheel built on the host; the host venv is only used as a build frontend (nothing is installed).
    local isolation=(--no-build-isolation)
    # setuptools builds wheels by itself from 70.1 on; older ones need the `wheel` package. Otherwise
    # let pip fetch a build backend into an isolated build env (PyPI is reachable).
    "${PYTHON}" - 2>/dev/null <<'PY' || isolation=()
import importlib.metadata as md, importlib.util, sys
v = tuple(int(x) for x in md.version("setuptools").split(".")[:2])
sys.exit(0 if v >= (70, 1) or importlib.util.find_spec("wheel") else 1)
PY
    if ! "${PYTHON}" -m pip wheel --no-deps --no-cache-dir --disable-pip-version-check --quiet \
        "${isolation[@]}" -w "${ctx}" "${src}" >"${ctx}.log" 2>&1; then
        cat "${ctx}.log" >&2
        die "building the adr_testdep ${version} wheel failed"
    fi
    local wheel
    wheel="$(cd "${ctx}" && ls adr_testdep-"${version}"-*.whl 2>/dev/null | head -n1)"
    [[ -n "${wheel}" ]] || die "no adr_testdep ${version} wheel produced"
    rm -rf "${src}"

    cat >"${ctx}/Dockerfile" <<EOF
FROM ${BASE_IMAGE}
COPY ${wheel} /tmp/${wheel}
RUN pip install --compile --no-index --no-deps --no-cache-dir --disable-pip-version-check /tmp/${wheel} \\
 && rm -f /tmp/${wheel} \\
 && python -c "import adr_testdep, sys; assert adr_testdep.version() == '${version}', adr_testdep.version()"
LABEL ${HASH_LABEL}=${hash}
EOF
    remember_old_image "${image}"
    if ! DOCKER_BUILDKIT=0 docker build --network none --quiet -t "${image}" "${ctx}" >"${ctx}.log" 2>&1; then
        cat "${ctx}.log" >&2
        die "docker build of ${image} failed"
    fi
    rm -rf "${ctx}" "${ctx}.log"
}

# ---------------------------------------------------------------------------------------------
# Build (or reuse) each image.
# ---------------------------------------------------------------------------------------------
BASE_HASH="$(printf '%s\n' "base" "${SCRIPT_HASH}" "${MIRROR}" "${ROOTFS_KEY}" "${AIRFLOW_PINS}" "${CLOSURE_PINS}" \
    | sha256_of_stdin)"
t0="$(now)"
if [[ "$(image_label "${BASE_IMAGE}" "${HASH_LABEL}")" == "${BASE_HASH}" ]]; then
    echo "${BASE_IMAGE}: cached ($(elapsed "${t0}"))"
else
    new_work_dir
    build_base "${BASE_HASH}"
    echo "${BASE_IMAGE}: built ($(elapsed "${t0}")) [$(tr '\n' ' ' <<<"${AIRFLOW_PINS}" | sed 's/ $//')]"
fi
BASE_ID="$(image_id "${BASE_IMAGE}")"

for spec in "1.0.0 adr-test/dep-v1:latest" "2.0.0 adr-test/dep-v2:latest"; do
    read -r version image <<<"${spec}"
    hash="$(printf '%s\n' "testdep" "${version}" "${BASE_ID}" "${SCRIPT_HASH}" "${TESTDEP_HASH}" | sha256_of_stdin)"
    t0="$(now)"
    if [[ "$(image_label "${image}" "${HASH_LABEL}")" == "${hash}" ]]; then
        echo "${image}: cached ($(elapsed "${t0}"))"
    else
        [[ -n "${WORK_DIR}" ]] || new_work_dir
        build_testdep_image "${version}" "${image}" "${hash}"
        echo "${image}: built ($(elapsed "${t0}")) [adr_testdep ${version}]"
    fi
done

# Remove images we replaced, children first, and only once they are untagged (<none>); a failure
# (e.g. still used by a container) is ignored.
for ((i = ${#OLD_IMAGE_IDS[@]} - 1; i >= 0; i--)); do
    id="${OLD_IMAGE_IDS[i]}"
    if [[ "$(docker image inspect --format '{{len .RepoTags}}' "${id}" 2>/dev/null || echo 1)" == "0" ]]; then
        docker image rm "${id}" >/dev/null 2>&1 || true
    fi
done
