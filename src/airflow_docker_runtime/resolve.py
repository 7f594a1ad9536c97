"""Where the image is chosen: the one precedence chain that turns layers into a runtime spec.

Order (earliest first, later wins; merge rules in :data:`airflow_docker_runtime.spec.MERGE_RULES`):

1. built-in defaults
2. ``[docker_runtime]`` (+ ``[docker_runtime_environment_variables]``)
3. ``[task_execution_docker_runtime]`` or ``[scheduler_dag_parsing_docker_runtime]`` (+ labels, env)
4. the coordinator entry's kwargs (``[sdk] coordinators``), for tasks
5. ``volume_mount_yaml``
6. the sidecar ``<dagfile>.py.metadata.yaml`` (``docker_runtime:``)
7. the sidecar's per-task override (``tasks: {<task_id>: {docker_runtime: ...}}``), for tasks
8. operator policy (checks 6-7; a violation is an error)
9. ``get_docker_runtime_image(image)`` from ``airflow_local_settings.py``
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from airflow_docker_runtime.errors import RuntimeSpecError
from airflow_docker_runtime.layers import (
    POLICY_SECTION,
    ConfigReader,
    Purpose,
    Sidecar,
    airflow_config_reader,
    config_layers,
    layer_from_mapping,
    load_sidecar,
    volume_file_layer,
)
from airflow_docker_runtime.policy import SidecarPolicy, check_any_layer, check_host_environment
from airflow_docker_runtime.spec import DEFAULTS, PURPOSE_DEFAULTS, RuntimeOptions, RuntimeSpec, merge_layers

ImageHook = Callable[[str], str]

HOOK_NAME = "get_docker_runtime_image"


def airflow_image_hook() -> ImageHook | None:
    """``get_docker_runtime_image`` from ``airflow_local_settings.py``, if the operator defined one."""
    try:
        from airflow import settings

        hook = getattr(settings, HOOK_NAME, None)
        if hook is None:
            import airflow_local_settings  # type: ignore[import-not-found]

            hook = getattr(airflow_local_settings, HOOK_NAME, None)
    except ImportError:
        return None
    return hook


@dataclass(frozen=True)
class Resolution:
    """A resolved runtime spec and, for every key, the layer it came from."""

    spec: RuntimeSpec
    sources: dict[str, str]
    sidecar: Path | None


def operator_layers(
    purpose: Purpose,
    coordinator_options: dict[str, Any] | None = None,
    coordinator_name: str | None = None,
    read_config: ConfigReader = airflow_config_reader,
) -> list[tuple[str, RuntimeOptions]]:
    """Layers 1-4: what the operator configured for ``purpose``, before any DAG file is involved."""
    layers: list[tuple[str, RuntimeOptions]] = [("default", RuntimeOptions.model_validate(DEFAULTS))]
    if purpose in PURPOSE_DEFAULTS:
        layers.append(("default", RuntimeOptions.model_validate(PURPOSE_DEFAULTS[purpose])))
    layers += config_layers(purpose, read_config)
    if coordinator_options:
        source = f"[sdk] coordinators {coordinator_name or ''}".rstrip()
        layers.append((source, layer_from_mapping(coordinator_options, source, trusted=True)))
    return layers


def operator_setting(key: str, purpose: Purpose, coordinator_options: dict[str, Any] | None = None) -> Any:
    """One operator-level value for ``purpose`` (e.g. the ``socket_path`` a worker's containers use)."""
    return merge_layers(operator_layers(purpose, coordinator_options))[0].get(key)


def resolve(
    dag_file: Path | str,
    *,
    purpose: Purpose,
    task_id: str | None = None,
    coordinator_options: dict[str, Any] | None = None,
    coordinator_name: str | None = None,
    read_config: ConfigReader = airflow_config_reader,
    image_hook: ImageHook | None | type[Ellipsis] = ...,
    root: Path | None = None,
) -> Resolution:
    """
    Resolve the runtime spec for parsing ``dag_file`` or for running ``task_id`` of it.

    ``root`` is the DAG folder or bundle the sidecar must lie in (default: the DAG file's directory).
    Raises :class:`~airflow_docker_runtime.errors.RuntimeSpecError` naming the file (or section) and key.
    """
    dag_file = Path(dag_file)
    layers = operator_layers(purpose, coordinator_options, coordinator_name, read_config)
    operator_values, _ = merge_layers(layers)
    if volume_file := operator_values.get("volume_mount_yaml"):
        layers.append(volume_file_layer(volume_file))

    for source, layer in layers:
        check_any_layer(source, "", layer)
    sidecar: Sidecar | None = load_sidecar(dag_file, root)
    if sidecar is not None:
        policy = SidecarPolicy.from_section(read_config(POLICY_SECTION))
        for source, layer in sidecar.layers(task_id if purpose == "task" else None):
            prefix = source.partition(f"{sidecar.path} ")[2]
            prefix = f"{prefix}.docker_runtime." if prefix else "docker_runtime."
            check_any_layer(str(sidecar.path), prefix, layer)
            policy.check_sidecar(str(sidecar.path), prefix, layer, operator_values)
            layers.append((source, layer))

    values, sources = merge_layers(layers)
    check_host_environment(values.get("environment_variables_from_host", ()), sources.get("environment_variables_from_host", ""))

    image = values.pop("image", None)
    repository = values.pop("container_repository", None)
    tag = values.pop("container_tag")
    if image is None:
        if not repository:
            raise RuntimeSpecError(
                str(sidecar.path) if sidecar else "[docker_runtime]",
                "image" if sidecar else "container_repository",
                "no image: set docker_runtime.image in the sidecar or [docker_runtime] container_repository",
            )
        image = f"{repository}:{tag}"
        sources["image"] = " + ".join(dict.fromkeys((sources["container_repository"], sources["container_tag"])))
    for key in ("container_repository", "container_tag", "volume_mount_yaml"):
        sources.pop(key, None)
        values.pop(key, None)

    hook = airflow_image_hook() if image_hook is ... else image_hook
    if hook is not None:
        try:
            hooked = hook(image)
        except Exception as exc:
            raise RuntimeSpecError("airflow_local_settings.py", HOOK_NAME, f"raised {type(exc).__name__}: {exc}") from None
        if not isinstance(hooked, str) or not hooked:
            raise RuntimeSpecError("airflow_local_settings.py", HOOK_NAME, f"must return an image name, got {hooked!r}")
        if hooked != image:
            image = hooked
            sources["image"] = f"{HOOK_NAME}() in airflow_local_settings.py"

    try:
        spec = RuntimeSpec(image=image, **values)
    except ValidationError as exc:
        key = str(exc.errors()[0]["loc"][0])
        raise RuntimeSpecError(sources.get(key, "runtime spec"), key, exc.errors()[0]["msg"]) from None
    return Resolution(spec=spec, sources=sources, sidecar=sidecar.path if sidecar else None)
