"""Small builders shared by the unit tests: DAG files with sidecars, config readers, specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow_docker_runtime.layers import sidecar_path
from airflow_docker_runtime.resolve import ImageHook, Resolution, resolve
from airflow_docker_runtime.spec import DEFAULTS, RuntimeSpec

REPOSITORY = "registry.example.com/airflow/base"
BASE_CONFIG: dict[str, dict[str, Any]] = {"docker_runtime": {"container_repository": REPOSITORY}}
"""The least an operator configures: a default image repository."""


def write_dag(directory: Path, sidecar: str | bytes | None = None, name: str = "x.py") -> Path:
    """Write ``directory/name`` (a DAG file) and, when given, its sidecar ``name.metadata.yaml``."""
    directory.mkdir(parents=True, exist_ok=True)
    dag_file = directory / name
    dag_file.write_text("# a DAG file\n")
    if isinstance(sidecar, bytes):
        sidecar_path(dag_file).write_bytes(sidecar)
    elif sidecar is not None:
        sidecar_path(dag_file).write_text(sidecar)
    return dag_file


def resolve_with(
    dag_file: Path,
    config: dict[str, dict[str, Any]] | None = None,
    *,
    purpose: str = "task",
    task_id: str | None = None,
    coordinator_options: dict[str, Any] | None = None,
    coordinator_name: str | None = None,
    hook: ImageHook | None = None,
) -> Resolution:
    """:func:`resolve` with ``config`` as airflow.cfg (``{section: {key: value}}``) and no Airflow import."""
    config = BASE_CONFIG if config is None else config
    return resolve(
        dag_file,
        purpose=purpose,  # type: ignore[arg-type]
        task_id=task_id,
        coordinator_options=coordinator_options,
        coordinator_name=coordinator_name,
        read_config=config.get,
        image_hook=hook,
    )


def make_spec(**overrides: Any) -> RuntimeSpec:
    """A resolved spec from the built-in defaults plus ``overrides``."""
    values = {k: v for k, v in DEFAULTS.items() if k not in ("container_tag",)}
    values.setdefault("image", "registry.example.com/airflow/base:latest")
    values.update(overrides)
    return RuntimeSpec(**values)


def tree(root: Path) -> set[str]:
    """Every path under ``root``, relative: to show a call created (or removed) nothing."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}
