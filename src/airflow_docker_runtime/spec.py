"""The runtime spec: one typed, immutable value saying how to run a task or a parse in a container.

Two models live here:

* :class:`RuntimeOptions` -- one *layer* of settings, every key optional. ``airflow.cfg`` sections, the
  volume file, a sidecar, a per-task override and a coordinator entry are each parsed into one.
* :class:`RuntimeSpec` -- the resolved result, every key concrete.

:func:`merge_layers` is the only place where layers are combined; its rules are stated in
:data:`MERGE_RULES` and unit-tested.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_docker_runtime.errors import excerpt

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


MAX_SIZE = 2**50
"""A petabyte: larger sizes are typos, and Docker's int64 fields must never overflow."""


def parse_size(value: Any) -> int:
    """Parse a Docker-style size (``256m``, ``2g``, ``1.5GiB``, ``1048576``) into bytes."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected a size like 512m or 2g, got {excerpt(value)}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE_RE.match(value) if len(value) < 40 else None
        if not match:
            raise ValueError(f"expected a size like 512m or 2g, got {excerpt(value)}")
        number, unit, _ = match.groups()
        size = int(float(number) * _SIZE_FACTORS[unit.lower()])
    if not 0 < size <= MAX_SIZE:
        raise ValueError(f"expected a positive size like 512m or 2g (at most 1024t), got {excerpt(value)}")
    return size


MIN_MEMORY = 6 * 1024**2
"""Docker refuses a memory limit below 6 MiB."""


def is_root_user(user: str | None) -> bool:
    """True for ``root``, ``0``, ``0:<gid>`` and ``root:<group>``: the user part is what counts."""
    return (user or "").partition(":")[0] in ("root", "0")


_NAME_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?"
IMAGE_REFERENCE_RE = re.compile(
    rf"(?:{_DOMAIN}/)?{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)
"""Docker's image reference grammar (distribution/reference): ``[domain[:port]/]path[:tag][@digest]``."""
VOLUME_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}")
"""Docker's named-volume grammar; ``./data`` or ``~/x`` is neither a volume nor an absolute host path."""
NETWORK_MODE_RE = re.compile(r"(?:container:)?[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")
USER_RE = re.compile(r"(?:[a-z_][a-z0-9_-]{0,31}|[0-9]{1,10})(?::(?:[a-z_][a-z0-9_-]{0,31}|[0-9]{1,10}))?")
HOST_NAME_RE = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9.-]{0,251}[a-zA-Z0-9])?")
CAPABILITY_RE = re.compile(r"[A-Z][A-Z_]{1,30}")
LABEL_KEY_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_./-]{0,254}")
ENV_NAME_RE = re.compile(r"[^=\x00]{1,255}")
PYTHON_RE = re.compile(r"[^\s\x00]{1,255}")


def _check_text(value: Any, pattern: re.Pattern[str], what: str) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"expected {what}, got {excerpt(value)}")
    return value


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
    def _source_is_path_or_volume(cls, value: str) -> str:
        if not value:
            raise ValueError("volume source is empty")
        if value.startswith("/"):
            return _normal_path(value, "volume source")
        if not VOLUME_NAME_RE.fullmatch(value):
            raise ValueError(f"volume source must be an absolute host path or a volume name, got {excerpt(value)}")
        return value

    @field_validator("target")
    @classmethod
    def _target_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"volume target must be an absolute path, got {excerpt(value)}")
        value = _normal_path(value, "volume target")
        if value == "/":
            raise ValueError("volume target must not be the container's root directory")
        return value

    @classmethod
    def parse(cls, value: Any) -> Volume:
        """Accept ``a:b``, ``a:b:ro``, ``a:b:rw`` or a mapping with source/target/read_only."""
        if isinstance(value, Volume):
            return value
        if isinstance(value, dict):
            return cls.model_validate(value)
        if not isinstance(value, str):
            raise ValueError(f"expected 'source:target[:ro]' or a mapping, got {excerpt(value)}")
        parts = value.split(":")
        if len(parts) == 2:
            return cls(source=parts[0], target=parts[1])
        if len(parts) == 3 and parts[2] in ("ro", "rw"):
            return cls(source=parts[0], target=parts[1], read_only=parts[2] == "ro")
        raise ValueError(f"expected 'source:target' or 'source:target:ro|rw', got {excerpt(value)}")

    def __str__(self) -> str:
        return f"{self.source}:{self.target}:{'ro' if self.read_only else 'rw'}"


def _normal_path(value: str, what: str) -> str:
    if "\x00" in value or len(value) > 4096:
        raise ValueError(f"{what} is not a valid path")
    normal = posixpath.normpath(value)
    if normal.startswith("//"):  # POSIX keeps a leading double slash; Docker does not
        normal = "/" + normal.lstrip("/")
    if normal != value.rstrip("/") and value != "/":
        raise ValueError(f"{what} must be a normalised path (no '..', '.' or '//'), got {excerpt(value)}")
    return normal


PullPolicy = Literal["never", "missing", "always"]
PULL_POLICY_ORDER = ("never", "missing", "always")
"""From fewest pulls to most: a sidecar may move left of the operator's choice, not right."""


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _split_mapping(value: Any) -> Any:
    """``a=1,b=2`` from a config string into a mapping (``extra_hosts`` too: ``host=ip``)."""
    if value is not None and not isinstance(value, (str, dict)):
        raise ValueError(f"expected a mapping, got {excerpt(value)}")
    if isinstance(value, str):
        result = {}
        for item in _split_list(value):
            key, sep, val = item.partition("=")
            if not sep:
                raise ValueError(f"expected 'name=value' pairs separated by commas, got {excerpt(item)}")
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
    stop_timeout: int | None = Field(None, ge=0, le=3600, description="Seconds between SIGTERM and SIGKILL on stop.")
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
    run_as_user: str | None = Field(
        None, description="User (name or uid[:gid]) the container runs as; default: the image's if not root, else 50000:50000."
    )
    memory: int | None = Field(None, description="Memory limit, e.g. 256m or 2g.")
    cpus: float | None = Field(None, gt=0, le=1024, allow_inf_nan=False, description="CPU limit in cores, e.g. 0.5.")
    pids_limit: int | None = Field(None, gt=0, le=4194304, description="Maximum number of processes in the container.")
    shm_size: int | None = Field(None, description="Size of /dev/shm, e.g. 64m.")
    cap_add: tuple[str, ...] | None = Field(
        None, description="Linux capabilities added back after dropping all (operator only), e.g. NET_BIND_SERVICE."
    )
    no_new_privileges: bool | None = Field(None, description="Forbid gaining privileges through setuid binaries or file capabilities.")
    read_only_rootfs: bool | None = Field(
        None, description="Mount the image's filesystem read-only; /tmp (and AIRFLOW_HOME in it) is a tmpfs of tmpfs_size."
    )
    tmpfs_size: int | None = Field(None, description="Size of the /tmp tmpfs of a read-only root filesystem, e.g. 256m.")
    runtime: str | None = Field(None, description="OCI runtime of the daemon to use, e.g. runsc (default: the daemon's).")
    gpus: str | None = Field(None, description="GPUs to request: 'all' or a count.")
    extra_hosts: dict[str, str] | None = Field(None, description="Extra /etc/hosts entries, host=ip.")
    python: str | None = Field(None, description="Python interpreter inside the image.")
    connect_timeout: float | None = Field(
        None, gt=0, le=3600, allow_inf_nan=False, description="Seconds to wait for the container to connect back before failing."
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
    def _image_reference(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        if value is not None and (len(value) > 512 or not IMAGE_REFERENCE_RE.fullmatch(value)):
            raise ValueError(f"not a valid image reference ([registry/]name[:tag][@digest]), got {excerpt(value)}")
        return value

    @field_validator("memory", "shm_size", "tmpfs_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        return parse_size(value)

    @field_validator("memory")
    @classmethod
    def _memory_minimum(cls, value: int | None) -> int | None:
        if value is not None and value < MIN_MEMORY:
            raise ValueError(f"Docker's smallest memory limit is 6m, got {format_size(value)}")
        return value

    @field_validator("network_mode")
    @classmethod
    def _network_mode(cls, value: Any) -> Any:
        return _check_text(value, NETWORK_MODE_RE, "none, bridge, host, container:<name> or a network name")

    @field_validator("run_as_user")
    @classmethod
    def _user(cls, value: Any) -> Any:
        return _check_text(value, USER_RE, "a user name or uid, optionally ':group' or ':gid'")

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, value: Any) -> Any:
        return _check_text(value, VOLUME_NAME_RE, "the name of a runtime configured on the Docker daemon")

    @field_validator("python")
    @classmethod
    def _python(cls, value: Any) -> Any:
        return _check_text(value, PYTHON_RE, "an executable name or path")

    @field_validator("cap_add", mode="before")
    @classmethod
    def _capabilities(cls, value: Any) -> Any:
        value = _split_list(value)
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list of capability names, got {excerpt(value)}")
        names = []
        for item in value:
            name = item.upper().removeprefix("CAP_") if isinstance(item, str) else item
            names.append(_check_text(name, CAPABILITY_RE, "a capability name such as NET_BIND_SERVICE"))
        return tuple(names)

    @field_validator("volumes", mode="before")
    @classmethod
    def _volumes(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list of volumes, got {excerpt(value)}")
        volumes = tuple(Volume.parse(item) for item in value)
        targets = [v.target for v in volumes]
        if len(set(targets)) != len(targets):
            raise ValueError("two volumes have the same target")
        return volumes

    @field_validator("environment_variables_from_host", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        value = _split_list(value)
        if isinstance(value, (list, tuple)):
            return tuple(_check_text(name, ENV_NAME_RE, "an environment variable name") for name in value)
        return value

    @field_validator("extra_hosts", "environments", "labels", mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        value = _split_mapping(value)
        if isinstance(value, dict):
            # YAML turns `KEY: 1` into an int; environment and labels are strings on the wire.
            return {_scalar_to_str(k): _scalar_to_str(v) for k, v in value.items()}
        return value

    @field_validator("environments")
    @classmethod
    def _environment_names(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, text in (value or {}).items():
            _check_text(name, ENV_NAME_RE, "an environment variable name (no '=')")
            if "\x00" in text:
                raise ValueError(f"{excerpt(name)}: a value must not contain a NUL character")
        return value

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, text in (value or {}).items():
            _check_text(name, LABEL_KEY_RE, "a label name such as team or com.example.team")
            if "\x00" in text:
                raise ValueError(f"{excerpt(name)}: a value must not contain a NUL character")
        return value

    @field_validator("extra_hosts")
    @classmethod
    def _hosts(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for host, address in (value or {}).items():
            _check_text(host, HOST_NAME_RE, "a host name")
            if address != "host-gateway":
                try:
                    ipaddress.ip_address(address)
                except ValueError:
                    raise ValueError(f"{excerpt(host)}: expected an IP address or host-gateway, got {excerpt(address)}") from None
        return value

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(f"expected 'all' or a positive count, got {excerpt(value)}")
        text = value.strip().lower() if isinstance(value, str) else str(value)
        if text != "all" and not (text.isdigit() and len(text) < 5 and 0 < int(text)):
            raise ValueError(f"expected 'all' or a positive count, got {excerpt(value)}")
        return text

    @field_validator("network_mode", "run_as_user", "container_repository", "container_tag", "runtime", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    def set_fields(self) -> dict[str, Any]:
        """The keys this layer sets, with their values."""
        return {name: getattr(self, name) for name in type(self).model_fields if getattr(self, name) is not None}


def _scalar_to_str(value: Any) -> str:
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"expected a string, number or boolean value, got {excerpt(value)}")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) >= 10**40:
        raise ValueError(f"expected a string, number or boolean value, got {excerpt(value)}")
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
        "cap_add",
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
    "warm_pool_size": 4,
    # The hardened profile (ADR 0008): what a container gets unless the operator loosens it.
    "network_mode": "none",
    "memory": 1024**3,
    "cpus": 1.0,
    "pids_limit": 512,
    "no_new_privileges": True,
    "read_only_rootfs": True,
    "tmpfs_size": 256 * 1024**2,
}
"""Built-in defaults (the AIP's where it gives one, ADR 0008's hardened profile). ``airflow.cfg`` overrides them."""

PURPOSE_DEFAULTS: dict[str, dict[str, Any]] = {"parse": {"fork_server": True}, "task": {"fork_server": False}}
"""Built-in defaults that differ by purpose: DAG files are parsed by fork servers unless the operator sets
``fork_server = False`` (one container per parse, the strict setting; ADR 0007); task tries get a
container each unless a queue opts in. Not in :data:`DEFAULTS`, so ``airflow.cfg``'s ``[docker_runtime]``
shows no default that would override the purpose's."""


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
    cap_add: tuple[str, ...] = ()
    no_new_privileges: bool = True
    read_only_rootfs: bool = True
    tmpfs_size: int = 256 * 1024**2
    runtime: str | None = None

    def limits_summary(self) -> str:
        """One line for the task log: the limits Docker will enforce."""
        if not self.limit_resource:
            return "none (limit_resource = False)"
        return (
            f"memory={format_size(self.memory)} cpus={self.cpus or 'unlimited'} "
            f"pids={self.pids_limit or 'unlimited'}"
        )
