"""The runtime spec: one typed, immutable value saying how to run a task or a parse in a container.

Two models live here:

* :class:`RuntimeOptions` -- one *layer* of settings, every key optional. ``airflow.cfg`` sections, the
  volume file, a sidecar, a per-task override and a coordinator entry are each parsed into one.
* :class:`RuntimeSpec` -- the resolved result, every key concrete.

:func:`merge_layers` is the only place where layers are combined; its rules are stated in
:data:`MERGE_RULES` and unit-tested.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: Any) -> int:
    """Parse a Docker-style size (``256m``, ``2g``, ``1.5GiB``, ``1048576``) into bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 512m or 2g, got a boolean")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("expected a positive size like 512m or 2g")
        return value
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError(f"expected a size like 512m or 2g, got {value!r}")
    number, unit, _ = match.groups()
    size = int(float(number) * _SIZE_FACTORS[unit.lower()])
    if size <= 0:
        raise ValueError(f"expected a positive size like 512m or 2g, got {value!r}")
    return size


def format_size(size: int | None) -> str:
    """Render bytes the way an operator writes them (``256m``); ``unlimited`` for None."""
    if size is None:
        return "unlimited"
    for unit, factor in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}b"


class Volume(BaseModel):
    """One bind mount or named volume: ``source:target[:ro|rw]`` or the long form."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(description="Absolute host path, or the name of a Docker volume.")
    target: str = Field(description="Absolute path inside the container.")
    read_only: bool = False

    @property
    def is_host_path(self) -> bool:
        return self.source.startswith("/")

    @field_validator("source")
    @classmethod
    def _source_not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("volume source is empty")
        return value

    @field_validator("target")
    @classmethod
    def _target_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"volume target must be an absolute path, got {value!r}")
        return value

    @classmethod
    def parse(cls, value: Any) -> Volume:
        """Accept ``a:b``, ``a:b:ro``, ``a:b:rw`` or a mapping with source/target/read_only."""
        if isinstance(value, Volume):
            return value
        if isinstance(value, dict):
            return cls.model_validate(value)
        if not isinstance(value, str):
            raise ValueError(f"expected 'source:target[:ro]' or a mapping, got {type(value).__name__}")
        parts = value.split(":")
        if len(parts) == 2:
            return cls(source=parts[0], target=parts[1])
        if len(parts) == 3 and parts[2] in ("ro", "rw"):
            return cls(source=parts[0], target=parts[1], read_only=parts[2] == "ro")
        raise ValueError(f"expected 'source:target' or 'source:target:ro|rw', got {value!r}")

    def __str__(self) -> str:
        return f"{self.source}:{self.target}:{'ro' if self.read_only else 'rw'}"


PullPolicy = Literal["never", "missing", "always"]


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _split_mapping(value: Any) -> Any:
    """``a=1,b=2`` from a config string into a mapping (``extra_hosts`` too: ``host=ip``)."""
    if isinstance(value, str):
        result = {}
        for item in _split_list(value):
            key, sep, val = item.partition("=")
            if not sep:
                raise ValueError(f"expected 'name=value' pairs separated by commas, got {item!r}")
            result[key.strip()] = val.strip()
        return result
    return value


class RuntimeOptions(BaseModel):
    """
    One layer of runtime settings. Every key is optional: ``None`` means "this layer does not say".

    The same schema reads ``[docker_runtime]``, ``[task_execution_docker_runtime]``,
    ``[scheduler_dag_parsing_docker_runtime]``, a coordinator entry's kwargs, and the ``docker_runtime:``
    block of a sidecar. Keys in :data:`OPERATOR_ONLY_KEYS` may not come from a sidecar.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str | None = Field(None, description="Full image reference; wins over container_repository/container_tag.")
    container_repository: str | None = Field(None, description="Default image repository.")
    container_tag: str | None = Field(None, description="Default image tag (latest when empty).")
    pull_policy: PullPolicy | None = Field(
        None, description="When to pull the image: never, missing (default) or always."
    )
    socket_path: str | None = Field(None, description="Docker daemon URL the worker/processor talks to.")
    mount_docker_socket: bool | None = Field(None, description="Bind-mount the daemon socket into the container.")
    stop_timeout: int | None = Field(None, ge=0, description="Seconds between SIGTERM and SIGKILL on stop.")
    volume_mount_yaml: str | None = Field(None, description="Path of a YAML file listing volumes (operator only).")
    volumes: tuple[Volume, ...] | None = Field(None, description="Mounts: 'src:dst[:ro]' or long form.")
    network_mode: str | None = Field(None, description="Docker network mode (bridge, none, host, <network>).")
    oom_kill_disable: bool | None = Field(None, description="Disable the kernel OOM killer for the container.")
    remove_container_after_exit: bool | None = Field(None, description="Remove the container when it exits.")
    privileged: bool | None = Field(None, description="Run the container privileged.")
    limit_resource: bool | None = Field(None, description="Apply memory/cpus/pids_limit (False ignores them).")
    environment_variables_from_host: tuple[str, ...] | None = Field(
        None, description="Names of worker environment variables copied into the container."
    )
    cgroup_mount_path: str | None = Field(None, description="Host cgroup mount, read for memory statistics.")
    docker_cgroup_subpath: str | None = Field(None, description="Docker's cgroup parent under the mount.")
    run_as_user: str | None = Field(None, description="User (name or uid[:gid]) the container runs as.")
    memory: int | None = Field(None, description="Memory limit, e.g. 256m or 2g.")
    cpus: float | None = Field(None, gt=0, description="CPU limit in cores, e.g. 0.5.")
    pids_limit: int | None = Field(None, gt=0, description="Maximum number of processes in the container.")
    shm_size: int | None = Field(None, description="Size of /dev/shm, e.g. 64m.")
    gpus: str | None = Field(None, description="GPUs to request: 'all' or a count.")
    extra_hosts: dict[str, str] | None = Field(None, description="Extra /etc/hosts entries, host=ip.")
    python: str | None = Field(None, description="Python interpreter inside the image.")
    connect_timeout: float | None = Field(
        None, gt=0, description="Seconds to wait for the container to connect back before failing."
    )
    environments: dict[str, str] | None = Field(None, description="Environment variables for the container.")
    labels: dict[str, str] | None = Field(None, description="Labels put on the container.")
    fork_server: bool | None = Field(
        None,
        description="Parse DAG files (default: True for parsing) or run task tries (default: False; set it per "
        "queue in the coordinator's kwargs) in children forked by one long-lived container per runtime spec "
        "that imported Airflow once, instead of one container per parse or try (ADR 0007).",
    )
    warm_pool_size: int | None = Field(
        None,
        ge=0,
        description="Tasks only: how many started, preloaded containers the host's warm pool may keep ready for "
        "one runtime spec (it grows to this as tries miss). 0 turns the pool off: every try starts its own "
        "container cold (ADR 0009).",
    )

    @field_validator("image")
    @classmethod
    def _image_not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("memory", "shm_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        return parse_size(value)

    @field_validator("volumes", mode="before")
    @classmethod
    def _volumes(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            raise ValueError("expected a list of volumes")
        return tuple(Volume.parse(item) for item in value)

    @field_validator("environment_variables_from_host", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("extra_hosts", "environments", "labels", mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        value = _split_mapping(value)
        if isinstance(value, dict):
            # YAML turns `KEY: 1` into an int; environment and labels are strings on the wire.
            return {str(k): _scalar_to_str(v) for k, v in value.items()}
        return value

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        text = str(value).strip().lower()
        if text != "all" and not (text.isdigit() and int(text) > 0):
            raise ValueError(f"expected 'all' or a positive count, got {value!r}")
        return text

    @field_validator("network_mode", "run_as_user", "container_repository", "container_tag", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    def set_fields(self) -> dict[str, Any]:
        """The keys this layer sets, with their values."""
        return {name: getattr(self, name) for name in type(self).model_fields if getattr(self, name) is not None}


def _scalar_to_str(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError(f"expected a string, number or boolean value, got {type(value).__name__}")
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


OPERATOR_ONLY_KEYS = frozenset(
    {
        "socket_path",
        "volume_mount_yaml",
        "environment_variables_from_host",
        "cgroup_mount_path",
        "docker_cgroup_subpath",
        "container_repository",
        "container_tag",
        "fork_server",
        "warm_pool_size",
    }
)
"""Keys that only ``airflow.cfg`` (trusted, the operator's) may set; a sidecar setting one is an error."""

MERGE_RULES: dict[str, str] = {
    "environments": "merge by key, the later layer wins per key",
    "labels": "merge by key, the later layer wins per key",
    "extra_hosts": "merge by key, the later layer wins per key",
    "volumes": "merge by target path, the later layer wins per target",
}
"""How :func:`merge_layers` combines a key set by two layers. Every other key: the later layer replaces."""


def merge_layers(layers: list[tuple[str, RuntimeOptions]]) -> tuple[dict[str, Any], dict[str, str]]:
    """
    Fold layers (earliest first) into one mapping of values and one of provenance.

    Returns ``(values, sources)``; ``sources[key]`` names the layer that last set ``key`` (for merged keys,
    every contributing layer, joined with ``+``).
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, layer in layers:
        for key, value in layer.set_fields().items():
            if key in MERGE_RULES and key in values:
                if key == "volumes":
                    by_target = {v.target: v for v in values[key]}
                    by_target.update({v.target: v for v in value})
                    values[key] = tuple(by_target.values())
                else:
                    values[key] = {**values[key], **value}
                sources[key] = f"{sources[key]} + {source}"
            else:
                values[key] = value
                sources[key] = source
    return values, sources


DEFAULTS: dict[str, Any] = {
    "container_tag": "latest",
    "pull_policy": "missing",
    "socket_path": "unix:///var/run/docker.sock",
    "mount_docker_socket": False,
    "stop_timeout": 20,
    "oom_kill_disable": False,
    "remove_container_after_exit": True,
    "privileged": False,
    "limit_resource": True,
    "cgroup_mount_path": "/sys/fs/cgroup",
    "docker_cgroup_subpath": "docker",
    "python": "python",
    "connect_timeout": 60.0,
    "fork_server": False,
    "warm_pool_size": 4,
}
"""Built-in defaults (the AIP's where it gives one). ``airflow.cfg`` overrides them."""


class RuntimeSpec(BaseModel):
    """How to run one task try or one parse of a DAG file in a container: every value resolved."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str
    pull_policy: PullPolicy
    socket_path: str
    python: str
    connect_timeout: float
    stop_timeout: int
    remove_container_after_exit: bool
    mount_docker_socket: bool
    privileged: bool
    oom_kill_disable: bool
    limit_resource: bool
    network_mode: str | None = None
    run_as_user: str | None = None
    memory: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    shm_size: int | None = None
    gpus: str | None = None
    extra_hosts: dict[str, str] = Field(default_factory=dict)
    volumes: tuple[Volume, ...] = ()
    environments: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    environment_variables_from_host: tuple[str, ...] = ()
    cgroup_mount_path: str
    docker_cgroup_subpath: str
    fork_server: bool = False
    warm_pool_size: int = 0

    def limits_summary(self) -> str:
        """One line for the task log: the limits Docker will enforce."""
        if not self.limit_resource:
            return "none (limit_resource = False)"
        return (
            f"memory={format_size(self.memory)} cpus={self.cpus or 'unlimited'} "
            f"pids={self.pids_limit or 'unlimited'}"
        )
