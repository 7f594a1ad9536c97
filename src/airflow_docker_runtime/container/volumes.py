"""Named volumes must exist before a container mounts them: Docker would create a missing one silently.

A sidecar's ``volumes`` name volumes the operator allowed (``allowed_volumes``); a typo or a name the
operator never provisioned must fail the start, not hand the task a fresh, empty volume that then
outlives it. Called by the launch path right before ``docker create``.
"""

from __future__ import annotations

import docker
import docker.errors

from airflow_docker_runtime.errors import ContainerStartupError
from airflow_docker_runtime.spec import RuntimeSpec


def ensure_volumes_exist(client: docker.DockerClient, spec: RuntimeSpec) -> None:
    """Raise :class:`ContainerStartupError` naming the first named volume of ``spec`` the daemon does not have."""
    for volume in spec.volumes:
        if volume.is_host_path:
            continue
        try:
            client.api.inspect_volume(volume.source)
        except docker.errors.NotFound:
            raise ContainerStartupError(
                f"volume {volume.source!r} (for {volume.target}) does not exist on the Docker daemon; the runtime "
                "never creates one: create it first (docker volume create) if it is meant to be mounted"
            ) from None
