"""What a DAG author's sidecar may ask for. Sidecars are untrusted; airflow.cfg is the operator's.

The policy is configuration (``[docker_runtime_policy]``). A sidecar request the policy forbids is a
:class:`~airflow_docker_runtime.errors.PolicyViolation` naming the sidecar and the key. A few rules hold
for every layer, the operator's included, because they protect Airflow's own secrets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_docker_runtime.errors import PolicyViolation, RuntimeSpecError
from airflow_docker_runtime.spec import RuntimeOptions, format_size, parse_size

SECRET_ENV_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "_AIRFLOW")
"""Worker variables never copied into a container: Airflow config (database URL, fernet and JWT keys),
connections and variables. The container gets Connections and Variables through the supervisor."""

HOST_NETWORK_MODES = ("host",)


def _truthy(value: object) -> bool:
    # Airflow's getsection() already turns "True" into a bool; a raw string may still arrive.
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class SidecarPolicy:
    """The operator's limits on sidecars. Defaults deny everything that reaches outside the container."""

    allow_privileged: bool = False
    allow_docker_socket: bool = False
    allow_host_network: bool = False
    allow_oom_kill_disable: bool = False
    allow_unlimited_resources: bool = False
    allowed_host_paths: tuple[str, ...] = ()
    allowed_registries: tuple[str, ...] = ()
    max_memory: int | None = None
    max_cpus: float | None = None

    @classmethod
    def from_section(cls, values: Mapping[str, str] | None) -> SidecarPolicy:
        """Build from ``[docker_runtime_policy]``; errors name the key."""
        source = "[docker_runtime_policy]"
        values = {k.lower(): v for k, v in (values or {}).items() if v not in (None, "")}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            try:
                if key.startswith("allow_") and key not in ("allowed_host_paths", "allowed_registries"):
                    if key not in cls.__dataclass_fields__:
                        raise KeyError(key)
                    kwargs[key] = _truthy(value)
                elif key in ("allowed_host_paths", "allowed_registries"):
                    kwargs[key] = tuple(item.strip() for item in str(value).split(",") if item.strip())
                elif key == "max_memory":
                    kwargs[key] = parse_size(value)
                elif key == "max_cpus":
                    kwargs[key] = float(value)
                else:
                    raise KeyError(key)
            except KeyError:
                raise RuntimeSpecError(source, key, f"unknown key; expected one of: {', '.join(cls.__dataclass_fields__)}") from None
            except ValueError as exc:
                raise RuntimeSpecError(source, key, str(exc)) from None
        return cls(**kwargs)

    def check_sidecar(self, source: str, prefix: str, layer: RuntimeOptions) -> None:
        """Raise :class:`PolicyViolation` for the first thing in ``layer`` the operator does not allow."""
        fields = layer.set_fields()

        def deny(key: str, message: str) -> None:
            raise PolicyViolation(source, f"{prefix}{key}", f"{message} (operator policy [docker_runtime_policy])")

        if fields.get("privileged") and not self.allow_privileged:
            deny("privileged", "a sidecar may not request a privileged container")
        if fields.get("mount_docker_socket") and not self.allow_docker_socket:
            deny("mount_docker_socket", "a sidecar may not mount the Docker socket")
        network = fields.get("network_mode")
        if network and (network in HOST_NETWORK_MODES or network.startswith("container:")) and not self.allow_host_network:
            deny("network_mode", f"a sidecar may not join another namespace ({network!r})")
        if fields.get("oom_kill_disable") and not self.allow_oom_kill_disable:
            deny("oom_kill_disable", "a sidecar may not disable the OOM killer")
        if fields.get("limit_resource") is False and not self.allow_unlimited_resources:
            deny("limit_resource", "a sidecar may not turn resource limits off")
        if self.max_memory and fields.get("memory") and fields["memory"] > self.max_memory:
            deny("memory", f"{format_size(fields['memory'])} is above the maximum {format_size(self.max_memory)}")
        if self.max_cpus and fields.get("cpus") and fields["cpus"] > self.max_cpus:
            deny("cpus", f"{fields['cpus']} is above the maximum {self.max_cpus}")
        for volume in fields.get("volumes", ()):
            if volume.is_host_path and not self.host_path_allowed(volume.source):
                allowed = ", ".join(self.allowed_host_paths) or "none"
                deny("volumes", f"host path {volume.source!r} is outside the allowed host paths ({allowed})")
        image = fields.get("image")
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


def check_host_environment(names: tuple[str, ...], source: str) -> None:
    """No layer may copy Airflow's own secrets from the worker's environment into a container."""
    for name in names:
        if name.upper().startswith(SECRET_ENV_PREFIXES):
            raise PolicyViolation(
                source,
                "environment_variables_from_host",
                f"{name!r} is Airflow configuration or a secret and is never copied into a container",
            )
