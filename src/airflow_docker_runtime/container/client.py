"""The Docker daemon as this package uses it: a cached client per socket, the image check and removal."""

from __future__ import annotations

import threading
from typing import Any

import docker
import docker.errors
import requests

from airflow_docker_runtime.errors import DaemonUnreachable, ImageNotFound
from airflow_docker_runtime.spec import RuntimeSpec

_clients: dict[str, docker.DockerClient] = {}
_clients_lock = threading.Lock()


def docker_client(socket_path: str) -> docker.DockerClient:
    """A cached client for the daemon at ``socket_path``; :class:`DaemonUnreachable` if it does not answer."""
    with _clients_lock:
        client = _clients.get(socket_path)
        if client is None:
            try:
                client = docker.DockerClient(base_url=socket_path, version="auto", timeout=120, max_pool_size=64)
            except docker.errors.DockerException as exc:
                raise DaemonUnreachable(f"Docker daemon at {socket_path} does not answer: {exc}") from None
            _clients[socket_path] = client
    return client


def ensure_image(client: docker.DockerClient, spec: RuntimeSpec) -> dict[str, Any]:
    """Return the image's inspect data, pulling per ``pull_policy``; :class:`ImageNotFound` otherwise."""
    try:
        if spec.pull_policy != "always":
            return client.api.inspect_image(spec.image)
    except docker.errors.ImageNotFound:
        if spec.pull_policy == "never":
            raise ImageNotFound(f"image {spec.image!r} is not on the Docker daemon and pull_policy is 'never'") from None
    except docker.errors.APIError as exc:  # an HTTP error from the daemon (also a requests exception)
        raise DaemonUnreachable(f"Docker daemon at {spec.socket_path} failed: {exc}") from None
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise DaemonUnreachable(f"Docker daemon at {spec.socket_path} does not answer: {exc}") from None
    try:
        client.api.pull(spec.image)
        return client.api.inspect_image(spec.image)
    except docker.errors.DockerException as exc:
        reason = getattr(exc, "explanation", None) or str(exc)
        raise ImageNotFound(f"image {spec.image!r} is not on the Docker daemon and pulling it failed: {reason}") from None
    except requests.exceptions.RequestException as exc:  # connection refused, reset, timed out
        raise DaemonUnreachable(f"Docker daemon at {spec.socket_path} does not answer: {exc}") from None


def remove_container(client: docker.DockerClient, container_id: str) -> None:
    """Force-remove a container and its anonymous volumes; a container already gone is fine."""
    try:
        client.api.remove_container(container_id, force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            raise
