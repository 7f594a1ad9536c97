"""Reading the layers of runtime settings: airflow.cfg sections, the volume file and DAG sidecars.

Everything here turns an outside source into :class:`~airflow_docker_runtime.spec.RuntimeOptions`
layers, or fails with a :class:`~airflow_docker_runtime.errors.RuntimeSpecError` naming the source and
the key. No Docker, no Airflow database.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from airflow_docker_runtime.errors import RuntimeSpecError, excerpt
from airflow_docker_runtime.spec import OPERATOR_ONLY_KEYS, RuntimeOptions

Purpose = Literal["task", "parse"]

BASE_SECTION = "docker_runtime"
BASE_ENV_SECTION = "docker_runtime_environment_variables"
PURPOSE_SECTIONS: dict[str, str] = {
    "task": "task_execution_docker_runtime",
    "parse": "scheduler_dag_parsing_docker_runtime",
}
FEATURE_FLAGS: dict[str, str] = {
    "task": "task_execution_runtime",
    "parse": "scheduler_dag_parsing_runtime",
}
PROCESS_OPTIONS = ("gc_on_start", "gc_interval", "daemon_timeout", "daemon_reattach_window", "warm_pool_max_containers", "warm_pool_max_memory", "warm_pool_idle_timeout")
"""Options of ``[docker_runtime]`` that configure the worker or DAG processor, not a container."""
POLICY_SECTION = "docker_runtime_policy"

SIDECAR_SUFFIX = ".metadata.yaml"
MAX_YAML_BYTES = 64 * 1024
"""Sidecars and the volume file are small; a larger file is refused before it is parsed."""
MAX_YAML_DEPTH = 8
"""Deepest nesting a settings file needs is 5 (tasks.<id>.docker_runtime.volumes.[n]); more is refused."""

ConfigReader = Callable[[str], Mapping[str, str] | None]
"""Returns one ``airflow.cfg`` section as a mapping (``None`` when absent)."""


def airflow_config_reader(section: str) -> Mapping[str, str] | None:
    """Read a section from Airflow's configuration (airflow.cfg, ``AIRFLOW__...`` env vars, defaults)."""
    from airflow.configuration import conf

    # getsection() coerces "50000" or "2.10" into numbers; run_as_user, tags and env values are strings.
    keys = conf.getsection(section)
    return None if keys is None else {key: conf.get(section, key) for key in keys}


def layer_from_mapping(data: Any, source: str, *, trusted: bool, key_prefix: str = "") -> RuntimeOptions:
    """Validate one mapping of settings; errors name ``source`` and the (prefixed) key."""
    if not isinstance(data, dict):
        raise RuntimeSpecError(source, key_prefix.rstrip(".") or "<top level>", "expected a mapping of settings")
    if not trusted:
        for key in data:
            if key in OPERATOR_ONLY_KEYS:
                raise RuntimeSpecError(
                    source, f"{key_prefix}{key}", "may only be set by the operator in airflow.cfg, not in a sidecar"
                )
    try:
        return RuntimeOptions.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = error["loc"]
        key = f"{key_prefix}{loc[0]}" if loc else key_prefix.rstrip(".")
        detail = ".".join(str(part) for part in loc[1:])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            known = ", ".join(sorted(k for k in RuntimeOptions.model_fields if trusted or k not in OPERATOR_ONLY_KEYS))
            message = f"unknown key; expected one of: {known}"
        elif detail:
            message = f"{detail}: {message}"
        raise RuntimeSpecError(source, key, message) from None


def _section(read: ConfigReader, name: str) -> dict[str, Any]:
    # Empty values mean "not set here": an override section inherits the key from [docker_runtime].
    # (Airflow's getsection() may already have turned values into bools and numbers.)
    return {k.lower(): v for k, v in (read(name) or {}).items() if v is not None and v != ""}


def config_layers(purpose: Purpose, read: ConfigReader = airflow_config_reader) -> list[tuple[str, RuntimeOptions]]:
    """
    The operator's layers for ``purpose``, earliest first.

    ``[docker_runtime]`` + ``[docker_runtime_environment_variables]``, then the purpose section
    (``[task_execution_docker_runtime]`` or ``[scheduler_dag_parsing_docker_runtime]``) with its
    ``_labels`` and ``_environment_variables`` sections. Environment variable names are upper-cased
    (Airflow lower-cases option names).
    """
    layers = []
    purpose_section = PURPOSE_SECTIONS[purpose]
    for section, env_section, labels_section in (
        (BASE_SECTION, BASE_ENV_SECTION, None),
        (purpose_section, f"{purpose_section}_environment_variables", f"{purpose_section}_labels"),
    ):
        values: dict[str, Any] = _section(read, section)
        for flag in (*FEATURE_FLAGS.values(), *PROCESS_OPTIONS):
            values.pop(flag, None)
        layers.append((f"[{section}]", layer_from_mapping(values, f"[{section}]", trusted=True)))
        env = {k.upper(): str(v) for k, v in _section(read, env_section).items()}
        if env:
            layers.append((f"[{env_section}]", layer_from_mapping({"environments": env}, f"[{env_section}]", trusted=True)))
        labels = _section(read, labels_section) if labels_section else {}
        if labels:
            layers.append((f"[{labels_section}]", layer_from_mapping({"labels": labels}, f"[{labels_section}]", trusted=True)))
    return layers


def runtime_flag(purpose: Purpose, read: ConfigReader = airflow_config_reader) -> Literal["native", "docker"]:
    """The feature flag for ``purpose``: ``native`` (the default) or ``docker``."""
    key = FEATURE_FLAGS[purpose]
    value = str(_section(read, BASE_SECTION).get(key, "native")).strip().lower()
    if value not in ("native", "docker"):
        raise RuntimeSpecError(f"[{BASE_SECTION}]", key, f"expected 'native' or 'docker', got {value!r}")
    return value  # type: ignore[return-value]


def gc_on_start(read: ConfigReader = airflow_config_reader) -> bool:
    """``[docker_runtime] gc_on_start``: sweep this host's orphaned containers when a worker or DAG
    processor first uses the runtime (default true)."""
    value = str(_section(read, BASE_SECTION).get("gc_on_start", "true")).strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise RuntimeSpecError(f"[{BASE_SECTION}]", "gc_on_start", f"expected true or false, got {value!r}")
    return value in ("true", "1", "yes")


class _StrictLoader(yaml.SafeLoader):
    """
    YAML's safe loader without what a small settings file never needs and an attacker would use.

    Refused, naming the key: anchors and aliases (a few hundred bytes of aliases expand into gigabytes),
    explicit tags (``!!binary``, ``!!set``, ``!!python/...``), nesting deeper than :data:`MAX_YAML_DEPTH`
    (the composer recurses), duplicate keys (YAML would silently keep the last), and keys that are not
    plain values. Dates stay strings and ``<<`` is an ordinary key: no implicit timestamps or merges.
    """

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:merge")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self.source = source
        self.path: list[str] = []

    def _refuse(self, mark: Any, message: str) -> RuntimeSpecError:
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        key = ".".join(part for part in self.path if part).replace(".[", "[")
        return RuntimeSpecError(self.source, key or "<top level>", f"{message}{where}")

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(index, yaml.ScalarNode):
            self.path.append(str(index.value))
        elif isinstance(index, int):
            self.path.append(f"[{index}]")
        else:
            self.path.append("")  # a key, or the document: named by its parent's path
        try:
            if len(self.path) > MAX_YAML_DEPTH + 1:
                raise self._refuse(event.start_mark, f"nested deeper than {MAX_YAML_DEPTH} levels")
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise self._refuse(event.start_mark, "YAML anchors and aliases (&name, *name) are not allowed")
            implicit = getattr(event, "implicit", False)
            if getattr(event, "tag", None) is not None and not (implicit[0] if isinstance(implicit, tuple) else implicit):
                raise self._refuse(event.start_mark, "explicit YAML tags (!!type) are not allowed")
            node = super().compose_node(parent, index)
            if isinstance(node, yaml.MappingNode):
                self._check_keys(node)
            return node
        finally:
            self.path.pop()

    def _check_keys(self, node: yaml.MappingNode) -> None:
        seen: set[str] = set()
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise self._refuse(key.start_mark, "a key must be a plain value, not a list or mapping")
            if key.value in seen:
                self.path.append(key.value)
                raise self._refuse(key.start_mark, f"duplicate key {excerpt(key.value)}")
            seen.add(key.value)


def load_yaml_text(text: str, source: str) -> Any:
    """Parse one small YAML document with :class:`_StrictLoader`; every error names ``source``."""
    loader = None
    try:
        loader = _StrictLoader(text, source)  # the reader refuses control characters here already
        return loader.get_single_data()
    except RuntimeSpecError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise RuntimeSpecError(source, "<file>", f"invalid YAML{where}: {excerpt(problem, 80)}") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise RuntimeSpecError(source, "<file>", f"invalid value: {excerpt(str(exc), 80)}") from None
    finally:
        if loader is not None:
            loader.dispose()


def gc_interval(read: ConfigReader = airflow_config_reader) -> float:
    """``[docker_runtime] gc_interval``: seconds between a worker's or DAG processor's sweeps of orphaned
    and left-behind containers (default 600; 0 sweeps only on start)."""
    return _seconds(read, "gc_interval", 600)


def daemon_timeout(read: ConfigReader = airflow_config_reader) -> float:
    """``[docker_runtime] daemon_timeout``: seconds a call to the Docker daemon may take before the daemon
    counts as not answering (default 60; a container's wait is not bounded by it)."""
    return _seconds(read, "daemon_timeout", 60, minimum=0.1)


def daemon_reattach_window(read: ConfigReader = airflow_config_reader) -> float:
    """``[docker_runtime] daemon_reattach_window``: seconds a supervisor keeps asking a daemon that went
    away how its running container is doing before it gives the container up (default 60)."""
    return _seconds(read, "daemon_reattach_window", 60)


def _seconds(read: ConfigReader, key: str, default: float, minimum: float = 0.0) -> float:
    value = _section(read, BASE_SECTION).get(key, default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise RuntimeSpecError(f"[{BASE_SECTION}]", key, f"expected a number of seconds, got {str(value)[:40]!r}") from None
    if not seconds >= minimum:  # also refuses nan
        raise RuntimeSpecError(f"[{BASE_SECTION}]", key, "must not be negative" if minimum == 0 else f"must be at least {minimum:g}")
    return seconds


def read_yaml_file(path: Path) -> Any:
    """Read a small YAML file with the strict loader; errors name the file."""
    source = str(path)
    try:
        if not path.is_file():  # follows symlinks: a FIFO or /dev/zero is refused, not read forever
            raise RuntimeSpecError(source, "<file>", "not a regular file")
        with path.open("rb") as handle:
            data = handle.read(MAX_YAML_BYTES + 1)
        if len(data) > MAX_YAML_BYTES:
            raise RuntimeSpecError(source, "<file>", f"file is larger than the limit of {MAX_YAML_BYTES} bytes")
        text = data.decode("utf-8")
    except RuntimeSpecError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise RuntimeSpecError(source, "<file>", f"cannot read: {exc.__class__.__name__}: {exc}") from None
    return load_yaml_text(text, source)


def volume_file_layer(path: str) -> tuple[str, RuntimeOptions]:
    """The operator's ``volume_mount_yaml``: a list of volumes, or a mapping with a ``volumes:`` list."""
    file = Path(path)
    data = read_yaml_file(file)
    if isinstance(data, dict):
        unknown = set(data) - {"volumes"}
        if unknown:
            raise RuntimeSpecError(path, sorted(unknown)[0], "unknown key; expected 'volumes'")
        data = data.get("volumes")
    if data is None:
        data = []
    if not isinstance(data, list):
        raise RuntimeSpecError(path, "volumes", "expected a list of volumes")
    source = f"volume_mount_yaml {path}"
    return source, layer_from_mapping({"volumes": data}, path, trusted=True)


def sidecar_path(dag_file: Path) -> Path:
    """``dags/etl.py`` -> ``dags/etl.py.metadata.yaml`` (the AIP's naming)."""
    return dag_file.with_name(dag_file.name + SIDECAR_SUFFIX)


@dataclass(frozen=True)
class Sidecar:
    """A parsed ``<dagfile>.py.metadata.yaml``: the file's runtime and optional per-task overrides."""

    path: Path
    runtime: RuntimeOptions
    tasks: Mapping[str, RuntimeOptions] = field(default_factory=dict)

    def layers(self, task_id: str | None) -> list[tuple[str, RuntimeOptions]]:
        layers = [(f"sidecar {self.path}", self.runtime)]
        if task_id is not None and task_id in self.tasks:
            layers.append((f"sidecar {self.path} tasks.{task_id}", self.tasks[task_id]))
        return layers


def load_sidecar(dag_file: Path, root: Path | None = None) -> Sidecar | None:
    """
    Load the sidecar beside ``dag_file``; ``None`` when there is none (global settings apply).

    The sidecar, symlinks resolved, must lie inside ``root`` (the DAG folder or bundle; default: the DAG
    file's directory): a link to a file elsewhere on the host is refused, not read.
    """
    path = sidecar_path(dag_file)
    if not path.exists() and not path.is_symlink():
        return None
    folder = (root or dag_file.parent).resolve()
    if not path.resolve().is_relative_to(folder):
        raise RuntimeSpecError(str(path), "<file>", f"resolves outside the DAG folder {folder}; a sidecar must live in it")
    return parse_sidecar(read_yaml_file(path), path)


def parse_sidecar(data: Any, path: Path) -> Sidecar:
    """Validate the parsed content of a sidecar (``data``) read from ``path``."""
    source = str(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RuntimeSpecError(source, "<top level>", f"expected a mapping with a 'docker_runtime:' key, got {excerpt(data)}")
    unknown = set(data) - {"docker_runtime", "tasks"}
    if unknown:
        raise RuntimeSpecError(source, str(sorted(unknown, key=str)[0]), "unknown key; expected 'docker_runtime' or 'tasks'")
    runtime_data = data.get("docker_runtime")
    runtime = layer_from_mapping({} if runtime_data is None else runtime_data, source, trusted=False, key_prefix="docker_runtime.")
    tasks_data = data.get("tasks")
    tasks_data = {} if tasks_data is None else tasks_data
    if not isinstance(tasks_data, dict):
        raise RuntimeSpecError(source, "tasks", "expected a mapping of task_id to {docker_runtime: {...}}")
    tasks = {}
    for task_id, override in tasks_data.items():
        if not isinstance(task_id, (str, int)) or isinstance(task_id, bool):
            raise RuntimeSpecError(source, f"tasks.{excerpt(task_id)}", "a task id must be a string")
        prefix = f"tasks.{task_id}."
        if not isinstance(override, dict) or set(override) - {"docker_runtime"}:
            raise RuntimeSpecError(source, prefix.rstrip("."), "expected a mapping with only a 'docker_runtime:' key")
        override_data = override.get("docker_runtime")
        tasks[str(task_id)] = layer_from_mapping(
            {} if override_data is None else override_data, source, trusted=False, key_prefix=f"{prefix}docker_runtime."
        )
    return Sidecar(path=path, runtime=runtime, tasks=tasks)


def host_environment(names: tuple[str, ...], environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The worker's values for ``environment_variables_from_host`` (absent names are skipped)."""
    return {name: environ[name] for name in names if name in environ}
