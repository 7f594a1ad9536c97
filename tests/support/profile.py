"""The hardened container profile (ADR 0008), checked on what Docker receives or reports.

Written independently of ``container/docker_args.py``: it reads the Engine API's own shape (a create
body as the counting proxy records it, or ``docker inspect``), so a bug in the translation cannot hide
from it. Used by the sidecar fuzz test (on docker-py's create arguments) and the container audit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RUNTIME_MOUNTS = {"/run/airflow-docker-runtime", "/opt/airflow-docker-runtime"}
RESERVED_LABEL_PREFIX = "airflow-docker-runtime."


def profile_violations(
    user: str | None,
    labels: Mapping[str, str] | None,
    host: Mapping[str, Any],
    *,
    max_memory: int = 1024**3,
    max_nano_cpus: int = 10**9,
    max_pids: int = 512,
    networks: tuple[str, ...] = ("none",),
) -> list[str]:
    """
    What in a container's settings departs from the hardened profile (an empty list: none).

    The only bind mounts allowed are the runtime's own and DAG bundles (same path inside, read-only).
    """
    found = []
    if (user or "").partition(":")[0] in ("", "0", "root"):
        found.append(f"runs as root (User={user!r})")
    if host.get("Privileged"):
        found.append("privileged")
    if [c.upper().removeprefix("CAP_") for c in host.get("CapDrop") or []] != ["ALL"]:
        found.append(f"CapDrop={host.get('CapDrop')!r}, not ['ALL']")
    if host.get("CapAdd"):
        found.append(f"CapAdd={host.get('CapAdd')!r}")
    options = host.get("SecurityOpt") or []
    if not any(o.replace("=", ":") in ("no-new-privileges:true", "no-new-privileges") for o in options):
        found.append(f"no no-new-privileges in SecurityOpt={options!r}")
    if any("unconfined" in o or o.startswith("seccomp") for o in options):
        found.append(f"seccomp changed: {options!r}")
    if not host.get("ReadonlyRootfs"):
        found.append("root filesystem writable")
    for key, cap in (("Memory", max_memory), ("NanoCpus", max_nano_cpus), ("PidsLimit", max_pids)):
        value = host.get(key) or 0
        if not 0 < value <= cap:
            found.append(f"{key}={value}, not in (0, {cap}]")
    if host.get("MemorySwap") not in (host.get("Memory"), None, 0) and host.get("MemorySwap", 0) > (host.get("Memory") or 0):
        found.append(f"swap beyond the memory limit (MemorySwap={host.get('MemorySwap')})")
    if host.get("OomKillDisable"):
        found.append("OOM killer disabled")
    if host.get("NetworkMode") not in networks:
        found.append(f"NetworkMode={host.get('NetworkMode')!r}, not one of {networks}")
    if host.get("Binds"):
        found.append(f"Binds={host.get('Binds')!r}")
    if host.get("Devices") or host.get("DeviceRequests"):
        found.append("devices")
    for name in ("PidMode", "IpcMode", "UTSMode", "UsernsMode"):  # cgroupns is "host" by default on cgroup v1
        if host.get(name) == "host":
            found.append(f"{name}=host")
    for mount in host.get("Mounts") or []:
        target, source, kind = mount.get("Target"), mount.get("Source"), mount.get("Type")
        if kind == "bind" and target not in RUNTIME_MOUNTS and target != source:
            found.append(f"bind mount of the host's {source!r} at {target!r}")
        if kind == "bind" and not mount.get("ReadOnly"):
            found.append(f"writable bind mount {source!r} at {target!r}")
        if source in ("/var/run/docker.sock", "/run/docker.sock"):
            found.append("the Docker socket is mounted")
    # Which labels under our prefix are the runtime's own is settled before Docker (the policy refuses the
    # prefix in every layer); what matters here is the one that changes behaviour: gc never removes these.
    if (labels or {}).get(f"{RESERVED_LABEL_PREFIX}keep"):
        found.append("kept after exit (keep label)")
    return found
