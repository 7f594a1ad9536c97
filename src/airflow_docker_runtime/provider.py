"""Airflow provider registration: package info, configuration sections and the CLI group."""

from __future__ import annotations

from typing import Any

from airflow_docker_runtime import __version__
from airflow_docker_runtime.layers import BASE_ENV_SECTION, BASE_SECTION, FEATURE_FLAGS, POLICY_SECTION, PURPOSE_SECTIONS
from airflow_docker_runtime.policy import SidecarPolicy
from airflow_docker_runtime.spec import DEFAULTS, OPERATOR_ONLY_KEYS, RuntimeOptions

SIDECAR_ONLY_KEYS = ("image", "volumes", "environments", "labels")
"""Keys with a dedicated place in airflow.cfg (``container_repository``, ``volume_mount_yaml``, the
``_environment_variables`` and ``_labels`` sections), so they are not options of the main sections."""

POLICY_DESCRIPTIONS = {
    "allow_privileged": "Let a sidecar request privileged: true.",
    "allow_docker_socket": "Let a sidecar request mount_docker_socket: true.",
    "allow_host_network": "Let a sidecar use network_mode host or container:<id>.",
    "allow_oom_kill_disable": "Let a sidecar request oom_kill_disable: true.",
    "allow_unlimited_resources": "Let a sidecar set limit_resource: false.",
    "allowed_host_paths": "Comma-separated host directories a sidecar may bind-mount (checked after resolving symlinks). Empty: none.",
    "allowed_registries": "Comma-separated image prefixes a sidecar may use (e.g. registry.example.com/team). Empty: any.",
    "allow_gpus": "Let a sidecar request gpus the operator did not set.",
    "allow_extra_hosts": "Let a sidecar add extra_hosts entries the operator did not set.",
    "allow_keep_containers": "Let a sidecar set remove_container_after_exit: false.",
    "allowed_volumes": "Comma-separated names of existing Docker volumes a sidecar may mount. Empty: none.",
    "allowed_network_modes": "Comma-separated network modes or network names a sidecar may choose besides none and the operator's. Empty: none.",
    "allowed_users": "Comma-separated users (as written: name, uid or uid:gid; root or 0 for root) a sidecar may run as besides the operator's. Empty: none.",
    "allowed_label_prefixes": "Comma-separated label prefixes a sidecar's labels must start with (e.g. com.example.). Empty: no sidecar labels.",
    "allowed_runtimes": "Comma-separated OCI runtimes (e.g. runsc) a sidecar may choose besides the operator's. Empty: none.",
    "allowed_pythons": "Comma-separated python values a sidecar may choose besides the operator's. Empty: none.",
    "max_memory": "Largest memory limit a sidecar may request, e.g. 4g. Empty: the operator's memory.",
    "max_cpus": "Largest cpus a sidecar may request. Empty: the operator's cpus.",
    "max_pids": "Largest pids_limit a sidecar may request. Empty: the operator's pids_limit.",
    "max_shm_size": "Largest shm_size a sidecar may request. Empty: the operator's shm_size (Docker's 64m when unset).",
    "max_stop_timeout": "Largest stop_timeout a sidecar may request, in seconds. Empty: the operator's stop_timeout.",
    "max_connect_timeout": "Largest connect_timeout a sidecar may request, in seconds. Empty: the operator's connect_timeout.",
}


def _option(description: str, default: Any, type_: str = "string") -> dict[str, Any]:
    if isinstance(default, bool):
        type_, default = "boolean", str(default)
    elif isinstance(default, (int, float)):
        type_, default = ("integer" if isinstance(default, int) else "float"), str(default)
    elif isinstance(default, (tuple, list)):
        default = ",".join(str(item) for item in default)
    return {"description": description, "version_added": None, "type": type_, "example": None, "default": default}


def _runtime_options(with_defaults: bool) -> dict[str, dict[str, Any]]:
    options = {}
    for name, field in RuntimeOptions.model_fields.items():
        if name in SIDECAR_ONLY_KEYS:
            continue
        description = field.description or ""
        if name in OPERATOR_ONLY_KEYS:
            description += " Operator only: a sidecar may not set it."
        options[name] = _option(description, DEFAULTS.get(name) if with_defaults else None)
    return options


def config_sections() -> dict[str, Any]:
    """The provider's configuration sections, as ``airflow config list`` shows them."""
    base = _runtime_options(with_defaults=True)
    for purpose, flag in FEATURE_FLAGS.items():
        what = "tasks run" if purpose == "task" else "DAG files are parsed"
        base[flag] = _option(f"native or docker: whether {what} in Docker containers.", "native")
    base["gc_on_start"] = _option(
        "Remove this host's orphaned containers (their supervisor is gone) when a worker or DAG processor "
        "first uses the docker runtime; the sweep runs in the background. See `airflow docker-runtime gc`.",
        True,
    )
    base["gc_interval"] = _option(
        "Seconds between sweeps of orphaned and left-behind containers by each worker and DAG processor process "
        "(checked at every try and parse; a failed sweep is retried at the next one). 0: sweep only on start.",
        600,
    )
    base["daemon_timeout"] = _option(
        "Seconds a call to the Docker daemon may take before it counts as not answering: a try or parse then "
        "fails with 'Docker daemon at ... does not answer' (a container's wait is not bounded by it).",
        60,
    )
    base["daemon_reattach_window"] = _option(
        "Seconds a supervisor whose connection to the daemon broke while its container ran keeps asking the "
        "daemon again (with backoff) before it gives the container up; with live-restore the container runs on "
        "through a daemon restart and the try finishes normally. See docs/operations.md#failure-modes.",
        60,
    )
    base["warm_pool_max_containers"] = _option(
        "Warm pool (tasks): the most idle or starting pooled containers this host keeps, over all runtime specs. "
        "See warm_pool_size and docs/how-it-works.md.",
        8,
    )
    base["warm_pool_max_memory"] = _option(
        "Warm pool (tasks): no further pooled container starts while the idle ones use this much memory (their "
        "cgroups' current usage), e.g. 2g.",
        "1g",
    )
    base["warm_pool_idle_timeout"] = _option(
        "Warm pool (tasks): seconds after the last claim for a runtime spec before its idle containers are stopped.",
        300,
    )
    sections: dict[str, Any] = {
        BASE_SECTION: {"description": "Docker runtime settings shared by task execution and DAG parsing (AIP-46).", "options": base},
        BASE_ENV_SECTION: {"description": "Environment variables for every container; names are upper-cased.", "options": {}},
        POLICY_SECTION: {
            "description": "What a DAG author's sidecar may ask for. Defaults deny everything reaching outside the container.",
            "options": {
                name: _option(POLICY_DESCRIPTIONS[name], getattr(SidecarPolicy(), name) if name.startswith("allow_") else "")
                for name in SidecarPolicy.__dataclass_fields__
            },
        },
    }
    for purpose, section in PURPOSE_SECTIONS.items():
        what = "task execution" if purpose == "task" else "DAG parsing"
        sections[section] = {
            "description": f"Overrides [{BASE_SECTION}] for {what}; every key is inherited when left empty.",
            "options": _runtime_options(with_defaults=False),
        }
        sections[f"{section}_labels"] = {"description": f"Labels put on every {what} container.", "options": {}}
        sections[f"{section}_environment_variables"] = {
            "description": f"Environment variables for {what} containers; names are upper-cased.",
            "options": {},
        }
    return sections


def get_provider_info() -> dict[str, Any]:
    """Entry point ``apache_airflow_provider``."""
    return {
        "package-name": "airflow-docker-runtime",
        "name": "Docker Runtime",
        "description": "Runtime isolation: run each DAG's tasks and parsing in Docker containers (AIP-46).",
        "versions": [__version__],
        "config": config_sections(),
        "cli": ["airflow_docker_runtime.cli.definition.get_cli_commands"],
    }
