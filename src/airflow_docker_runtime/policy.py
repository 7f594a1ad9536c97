"""What a DAG author's sidecar may ask for. Sidecars are untrusted; airflow.cfg is the operator's.

The policy is configuration (``[docker_runtime_policy]``). The rule is one sentence: a sidecar may ask
for *less* than the operator configured, never more, unless a policy key allows it. "The operator
configured" means the merged operator layers (built-in hardened defaults, ``airflow.cfg``, coordinator
kwargs) for the same purpose. A sidecar request the policy forbids is a
:class:`~airflow_docker_runtime.errors.PolicyViolation` naming the sidecar and the key. A few rules hold
for every layer, the operator's included, because they protect Airflow's own secrets and the runtime's
own mounts and labels.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from airflow_docker_runtime.container.docker_args import BOOTSTRAP_DIR_IN_CONTAINER, LABEL_PREFIX, RUN_DIR_IN_CONTAINER
from airflow_docker_runtime.errors import PolicyViolation, RuntimeSpecError, excerpt
from airflow_docker_runtime.spec import PULL_POLICY_ORDER, RuntimeOptions, format_size, is_root_user, parse_size

SECRET_ENV_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "_AIRFLOW")
"""Worker variables never copied into a container: Airflow config (database URL, fernet and JWT keys),
connections and variables. The container gets Connections and Variables through the supervisor."""

RESERVED_LABEL_PREFIX = f"{LABEL_PREFIX}."
"""Our labels (ownership, ``keep``) drive ``gc``; no layer may set one."""
RESERVED_TARGETS = (RUN_DIR_IN_CONTAINER, BOOTSTRAP_DIR_IN_CONTAINER)
"""Where the runtime mounts the supervisor's socket and the bootstrap; no volume may cover or shadow them."""
DOCKER_DEFAULT_SHM = 64 * 1024**2

HOST_NETWORK_MODES = ("host",)


def _truthy(value: object) -> bool:
    # Airflow's getsection() already turns "True" into a bool; a raw string may still arrive.
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")


def _names(value: object) -> tuple[str, ...]:
    return tuple(item.strip() for item in str(value).split(",") if item.strip())


@dataclass(frozen=True)
class SidecarPolicy:
    """The operator's limits on sidecars. Defaults deny everything that loosens the operator's settings."""

    allow_privileged: bool = False
    allow_docker_socket: bool = False
    allow_host_network: bool = False
    allow_oom_kill_disable: bool = False
    allow_unlimited_resources: bool = False
    allow_gpus: bool = False
    allow_extra_hosts: bool = False
    allow_keep_containers: bool = False
    allowed_host_paths: tuple[str, ...] = ()
    allowed_registries: tuple[str, ...] = ()
    allowed_volumes: tuple[str, ...] = ()
    allowed_network_modes: tuple[str, ...] = ()
    allowed_users: tuple[str, ...] = ()
    allowed_label_prefixes: tuple[str, ...] = ()
    allowed_runtimes: tuple[str, ...] = ()
    allowed_pythons: tuple[str, ...] = ()
    max_memory: int | None = None
    max_cpus: float | None = None
    max_pids: int | None = None
    max_shm_size: int | None = None
    max_stop_timeout: int | None = None
    max_connect_timeout: float | None = None

    @classmethod
    def from_section(cls, values: Mapping[str, str] | None) -> SidecarPolicy:
        """Build from ``[docker_runtime_policy]``; errors name the key."""
        source = "[docker_runtime_policy]"
        values = {k.lower(): v for k, v in (values or {}).items() if v not in (None, "")}
        parsers: dict[str, Callable[[Any], Any]] = {}
        for spec in fields(cls):
            if spec.name.startswith("allow_"):
                parsers[spec.name] = _truthy
            elif spec.name.startswith("allowed_"):
                parsers[spec.name] = _names
            elif spec.name in ("max_memory", "max_shm_size"):
                parsers[spec.name] = parse_size
            else:
                parsers[spec.name] = _positive(float if spec.name in ("max_cpus", "max_connect_timeout") else int)
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key not in parsers:
                raise RuntimeSpecError(source, key, f"unknown key; expected one of: {', '.join(parsers)}")
            try:
                kwargs[key] = parsers[key](value)
            except ValueError as exc:
                raise RuntimeSpecError(source, key, str(exc)) from None
        return cls(**kwargs)

    def check_sidecar(self, source: str, prefix: str, layer: RuntimeOptions, operator: Mapping[str, Any]) -> None:
        """
        Raise :class:`PolicyViolation` for the first thing in ``layer`` that asks for more than ``operator``
        (the merged operator values) and no policy key allows.
        """
        asked = layer.set_fields()

        def deny(key: str, message: str) -> None:
            raise PolicyViolation(source, f"{prefix}{key}", f"{message} (operator policy [docker_runtime_policy])")

        def at_most(key: str, cap: Any, show: Callable[[Any], str] = str) -> None:
            if key in asked and cap is not None and asked[key] > cap:
                deny(key, f"{show(asked[key])} is above the operator's limit {show(cap)}")

        # Switches that open the container to the host: off unless a policy key allows them.
        if asked.get("privileged") and not self.allow_privileged:
            deny("privileged", "a sidecar may not request a privileged container")
        if asked.get("mount_docker_socket") and not self.allow_docker_socket:
            deny("mount_docker_socket", "a sidecar may not mount the Docker socket")
        if asked.get("oom_kill_disable") and not self.allow_oom_kill_disable:
            deny("oom_kill_disable", "a sidecar may not disable the OOM killer")
        if asked.get("limit_resource") is False and operator.get("limit_resource") and not self.allow_unlimited_resources:
            deny("limit_resource", "a sidecar may not turn resource limits off")
        if asked.get("remove_container_after_exit") is False and operator.get("remove_container_after_exit") and not self.allow_keep_containers:
            deny("remove_container_after_exit", "a sidecar may not keep its containers after they exit")
        for key in ("no_new_privileges", "read_only_rootfs"):
            if asked.get(key) is False and operator.get(key):
                deny(key, "only the operator may turn this protection off")
        if "gpus" in asked and asked["gpus"] != operator.get("gpus") and not self.allow_gpus:
            deny("gpus", "a sidecar may not request GPUs")

        # Amounts: at most what the operator set, or the policy's maximum when one is set.
        at_most("memory", self.max_memory or operator.get("memory"), format_size)
        at_most("cpus", self.max_cpus or operator.get("cpus"))
        at_most("pids_limit", self.max_pids or operator.get("pids_limit"))
        at_most("shm_size", self.max_shm_size or operator.get("shm_size") or DOCKER_DEFAULT_SHM, format_size)
        at_most("tmpfs_size", operator.get("tmpfs_size"), format_size)
        at_most("stop_timeout", self.max_stop_timeout or operator.get("stop_timeout"))
        at_most("connect_timeout", self.max_connect_timeout or operator.get("connect_timeout"))
        if "pull_policy" in asked and operator.get("pull_policy") in PULL_POLICY_ORDER:
            if PULL_POLICY_ORDER.index(asked["pull_policy"]) > PULL_POLICY_ORDER.index(operator["pull_policy"]):
                deny("pull_policy", f"{asked['pull_policy']!r} pulls more often than the operator's {operator['pull_policy']!r}")

        # Choices: the operator's value, or one the policy lists.
        user = asked.get("run_as_user")
        if user is not None and user != operator.get("run_as_user") and user not in self.allowed_users:
            what = "root" if is_root_user(user) else f"user {excerpt(user)}"
            deny("run_as_user", f"{what} is not an allowed user ({', '.join(self.allowed_users) or 'none'})")
        network = asked.get("network_mode")
        if network is not None and network not in ("none", operator.get("network_mode")):
            if network not in self.allowed_network_modes:
                allowed = ", ".join(("none", *self.allowed_network_modes))
                deny("network_mode", f"network {excerpt(network)} is not an allowed network mode ({allowed})")
            if (network in HOST_NETWORK_MODES or network.startswith("container:")) and not self.allow_host_network:
                deny("network_mode", f"a sidecar may not join another namespace ({network!r})")
        for key, allowed_values in (("runtime", self.allowed_runtimes), ("python", self.allowed_pythons)):
            if key in asked and asked[key] != operator.get(key) and asked[key] not in allowed_values:
                deny(key, f"{excerpt(asked[key])} is not allowed ({', '.join(allowed_values) or 'only the operator chooses'})")
        for host, address in asked.get("extra_hosts", {}).items():
            if (operator.get("extra_hosts") or {}).get(host) != address and not self.allow_extra_hosts:
                deny("extra_hosts", f"a sidecar may not add host entries ({excerpt(host)})")
        for name in asked.get("labels", {}):
            if not any(name.startswith(p) for p in self.allowed_label_prefixes):
                deny("labels", f"label {excerpt(name)} is outside the allowed label prefixes ({', '.join(self.allowed_label_prefixes) or 'none'})")
        for volume in asked.get("volumes", ()):
            if volume.is_host_path and not self.host_path_allowed(volume.source):
                allowed = ", ".join(self.allowed_host_paths) or "none"
                deny("volumes", f"host path {volume.source!r} is outside the allowed host paths ({allowed})")
            if not volume.is_host_path and volume.source not in self.allowed_volumes:
                deny("volumes", f"volume {volume.source!r} is not an allowed volume ({', '.join(self.allowed_volumes) or 'none'})")
        image = asked.get("image")
        if image and not self.registry_allowed(image):
            deny("image", f"image {image!r} is not from an allowed registry ({', '.join(self.allowed_registries)})")

    def host_path_allowed(self, path: str) -> bool:
        """True when ``path``, symlinks resolved, lies inside one of the allowed host paths."""
        real = os.path.realpath(path)
        for allowed in self.allowed_host_paths:
            root = os.path.realpath(allowed)
            if real == root or real.startswith(root.rstrip("/") + "/"):
                return True
        return False

    def registry_allowed(self, image: str) -> bool:
        """True when no allow-list is set, or ``image`` (normalised) starts with an allowed prefix."""
        if not self.allowed_registries:
            return True
        name = normalise_image(image)
        return any(name == p or name.startswith(p.rstrip("/") + "/") for p in map(normalise_prefix, self.allowed_registries))


def _positive(kind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        number = kind(value)
        if not 0 < number < float("inf"):
            raise ValueError(f"expected a positive number, got {excerpt(value)}")
        return number

    return parse


def normalise_image(image: str) -> str:
    """``busybox`` -> ``docker.io/library/busybox``; ``reg.example.com/x`` is kept."""
    first, sep, rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return image
    if not sep:
        return f"docker.io/library/{image}"
    return f"docker.io/{image}"


def normalise_prefix(prefix: str) -> str:
    first = prefix.partition("/")[0]
    if "." in first or ":" in first or first == "localhost":
        return prefix
    return f"docker.io/{prefix}"


def check_any_layer(source: str, prefix: str, layer: RuntimeOptions) -> None:
    """Rules for every layer, the operator's included: the runtime's own labels and mounts are its own."""
    for name in layer.labels or {}:
        if name.startswith(RESERVED_LABEL_PREFIX):
            raise PolicyViolation(source, f"{prefix}labels", f"{excerpt(name)}: the prefix {RESERVED_LABEL_PREFIX!r} is reserved for the runtime")
    for volume in layer.volumes or ():
        target = volume.target
        if any(target == t or target.startswith(t + "/") or t.startswith(target + "/") for t in RESERVED_TARGETS):
            raise PolicyViolation(source, f"{prefix}volumes", f"target {target!r} would cover the runtime's own mounts ({', '.join(RESERVED_TARGETS)})")


def check_host_environment(names: tuple[str, ...], source: str) -> None:
    """No layer may copy Airflow's own secrets from the worker's environment into a container."""
    for name in names:
        if name.upper().startswith(SECRET_ENV_PREFIXES):
            raise PolicyViolation(
                source,
                "environment_variables_from_host",
                f"{name!r} is Airflow configuration or a secret and is never copied into a container",
            )
