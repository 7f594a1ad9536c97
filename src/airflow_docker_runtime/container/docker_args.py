"""Translating a runtime spec into the arguments of a Docker create call. Pure: no daemon needed."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.models import containers as _docker_containers
from docker.types import DeviceRequest, Mount

from airflow_docker_runtime.inside.bootstrap import WORKER_VERSIONS_ENV, encode_versions, installed_versions
from airflow_docker_runtime.spec import RuntimeSpec, is_root_user

# docker-py's containers.create() passes on every create_container() argument but stop_timeout (the
# Engine's StopTimeout, API 1.25+): let it through, so the daemon's own stops honour ours (create_kwargs).
if "stop_timeout" not in _docker_containers.RUN_CREATE_KWARGS:
    _docker_containers.RUN_CREATE_KWARGS.append("stop_timeout")

LABEL_PREFIX = "airflow-docker-runtime"
MANAGED_LABEL = f"{LABEL_PREFIX}.managed"

RUN_DIR_IN_CONTAINER = "/run/airflow-docker-runtime"
"""Where the per-run directory (the supervisor's unix socket) is mounted in the container."""
BOOTSTRAP_DIR_IN_CONTAINER = "/opt/airflow-docker-runtime"
"""Where the small bootstrap (``inside/``) is mounted, read-only: images need not contain this package."""
SOCKET_NAME = "supervisor.sock"
CONTAINER_HOME = "/tmp/airflow-home"
DEFAULT_USER = "50000:50000"
"""Who a container runs as when neither the operator nor the image names a non-root user (ADR 0008):
uid 50000 is the ``airflow`` user of Airflow's official images, so images built from them need nothing."""
DOCKER_SOCKET = "/var/run/docker.sock"

FORWARDED_CONFIG = (
    ("core", "default_timezone"),
    ("core", "load_examples"),
    ("core", "dagbag_import_timeout"),
    ("core", "dagbag_import_error_tracebacks"),
    ("core", "dagbag_import_error_traceback_depth"),
    ("core", "dag_discovery_safe_mode"),
    ("logging", "logging_level"),
)
"""Non-secret worker settings that change how a DAG file parses or logs, copied into the container so it
behaves like the native runtime. Nothing else of the worker's configuration enters the container."""


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", text).strip("-.")[:limit] or "x"


def container_name(kind: str, *parts: object) -> str:
    """A deterministic, valid container name: readable prefix plus a hash of the full identity."""
    identity = "\0".join(str(p) for p in parts)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    readable = "-".join(_slug(str(p), 30) for p in parts[:2])
    return f"adr-{kind}-{readable}-{digest}"


@dataclass(frozen=True)
class LaunchRequest:
    """Everything besides the spec that a container launch needs."""

    kind: str
    """``task`` or ``parse``: which upstream child the bootstrap runs."""
    name: str
    run_dir: Path
    bootstrap_dir: Path
    bundle_paths: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    """Runtime-provided variables (bundle config, forwarded settings); the spec's own env wins over none of
    these -- they are what makes the container work."""
    image_user: str | None = None
    """The image's configured user (``Config.User`` of ``docker inspect``); None when unknown or unset."""


def container_user(spec: RuntimeSpec, image_user: str | None) -> str:
    """
    The user the container runs as: ``run_as_user`` when set (the policy vetted it); else the image's
    user when it is a numeric, non-root uid; else :data:`DEFAULT_USER`.

    A user *name* in the image is not trusted: only the image's ``/etc/passwd`` knows whether it is uid 0.
    """
    if spec.run_as_user:
        return spec.run_as_user
    uid = (image_user or "").partition(":")[0]
    if uid.isdigit() and not is_root_user(image_user):
        return image_user  # type: ignore[return-value]
    return DEFAULT_USER


@functools.cache
def worker_versions() -> str:
    """This worker's Airflow core and Task SDK versions, as the bootstrap's version check reads them."""
    return encode_versions(installed_versions())


def create_kwargs(spec: RuntimeSpec, request: LaunchRequest, host_env: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments for ``docker.DockerClient().containers.create`` that realise ``spec``."""
    mounts = [
        Mount(RUN_DIR_IN_CONTAINER, str(request.run_dir), type="bind", read_only=True),  # connectable, not writable
        Mount(BOOTSTRAP_DIR_IN_CONTAINER, str(request.bootstrap_dir), type="bind", read_only=True),
    ]
    mounts += [Mount(path, path, type="bind", read_only=True) for path in request.bundle_paths]
    for volume in spec.volumes:
        mounts.append(
            Mount(volume.target, volume.source, type="bind" if volume.is_host_path else "volume", read_only=volume.read_only)
        )
    if spec.mount_docker_socket:
        mounts.append(Mount(DOCKER_SOCKET, spec.socket_path.removeprefix("unix://"), type="bind"))

    environment = {"AIRFLOW_HOME": CONTAINER_HOME, "PYTHONUNBUFFERED": "1"}
    environment.update(host_env)
    environment.update(spec.environments)
    environment.update(request.environment)
    environment[WORKER_VERSIONS_ENV] = worker_versions()  # the bootstrap refuses an image of another minor version

    # The policy refuses our prefix in every layer; dropping it here too keeps `gc` trusting its labels.
    labels = {k: v for k, v in spec.labels.items() if not k.startswith(f"{LABEL_PREFIX}.")}
    labels.update({f"{LABEL_PREFIX}.{k}": str(v) for k, v in request.labels.items()})
    labels[MANAGED_LABEL] = "true"
    labels[f"{LABEL_PREFIX}.kind"] = request.kind
    if not spec.remove_container_after_exit:  # `airflow docker-runtime gc` leaves these for inspection
        labels[f"{LABEL_PREFIX}.keep"] = "true"

    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": [
            spec.python,
            f"{BOOTSTRAP_DIR_IN_CONTAINER}/bootstrap.py",
            f"{RUN_DIR_IN_CONTAINER}/{SOCKET_NAME}",
            request.kind,
        ],
        "name": request.name,
        "labels": labels,
        "environment": environment,
        "mounts": mounts,
        "init": True,
        "detach": True,
        "privileged": spec.privileged,
        "oom_kill_disable": spec.oom_kill_disable,
        "stop_signal": "SIGTERM",
        "stop_timeout": spec.stop_timeout,  # the daemon's own stops (its shutdown, `docker stop`) honour it too
        "working_dir": "/tmp",
        "user": container_user(spec, request.image_user),
        # The hardened profile (ADR 0008); Docker's default seccomp profile applies as nothing replaces it.
        "cap_drop": ["ALL"],
        "read_only": spec.read_only_rootfs,
    }
    if spec.cap_add:
        kwargs["cap_add"] = list(spec.cap_add)
    if spec.no_new_privileges:
        kwargs["security_opt"] = ["no-new-privileges:true"]
    if spec.read_only_rootfs:  # the one writable place, and AIRFLOW_HOME lies in it
        kwargs["tmpfs"] = {"/tmp": f"rw,nosuid,nodev,size={spec.tmpfs_size}"}
    if spec.runtime:
        kwargs["runtime"] = spec.runtime
    if spec.network_mode:
        kwargs["network_mode"] = spec.network_mode
    if spec.limit_resource:
        if spec.memory:
            kwargs["mem_limit"] = spec.memory
            kwargs["memswap_limit"] = spec.memory  # no swap beyond the limit: an OOM is an OOM
        if spec.cpus:
            kwargs["nano_cpus"] = round(spec.cpus * 1e9)
        if spec.pids_limit:
            kwargs["pids_limit"] = spec.pids_limit
    if spec.shm_size:
        kwargs["shm_size"] = spec.shm_size
    if spec.extra_hosts:
        kwargs["extra_hosts"] = dict(spec.extra_hosts)
    if spec.gpus:
        count = -1 if spec.gpus == "all" else int(spec.gpus)
        kwargs["device_requests"] = [DeviceRequest(count=count, capabilities=[["gpu"]])]
    return kwargs


def forwarded_config(get: Any) -> dict[str, str]:
    """``AIRFLOW__SECTION__KEY`` variables for :data:`FORWARDED_CONFIG`, read with ``get(section, key)``."""
    env = {}
    for section, key in FORWARDED_CONFIG:
        value = get(section, key)
        if value not in (None, ""):
            env[f"AIRFLOW__{section.upper()}__{key.upper()}"] = str(value)
    return env
