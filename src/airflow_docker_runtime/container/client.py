"""The Docker daemon as this package uses it: a cached client per socket, the image check and removal."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import docker
import docker.errors
import requests

from airflow_docker_runtime.errors import DaemonUnreachable, ImageNotFound
from airflow_docker_runtime.spec import RuntimeSpec

_clients: dict[str, docker.DockerClient] = {}
_clients_lock = threading.Lock()


def docker_client(socket_path: str) -> docker.DockerClient:
    """A cached client for the daemon at ``socket_path``; :class:`DaemonUnreachable` if it does not answer.

    Every call but a container's wait gives up after ``[docker_runtime] daemon_timeout``. Only a client
    whose daemon answered is cached, and a cached one survives the daemon's restart (its connections are
    opened again), so a daemon that comes back serves the next try without restarting anything.
    """
    with _clients_lock:
        client = _clients.get(socket_path)
        if client is None:
            timeout = _daemon_timeout()
            try:
                client = docker.DockerClient(base_url=socket_path, version="auto", timeout=timeout, max_pool_size=64)
            except docker.errors.DockerException as exc:
                raise DaemonUnreachable(f"Docker daemon at {socket_path} does not answer: {exc}") from None
            _clients[socket_path] = client
    return client


def _daemon_timeout() -> float:
    from airflow_docker_runtime.layers import daemon_timeout

    try:
        return daemon_timeout()
    except ImportError:  # a process without Airflow (none today): the default
        return 60.0


def daemon_listens(socket_path: str) -> bool:
    """Whether the daemon at a ``unix://`` ``socket_path`` accepts a new connection (any other URL: assumed).

    A stopping daemon closes its listener first and then stops its containers (without live-restore)
    while it still answers on connections already open, such as a container's wait: a refused connect is
    how a supervisor tells that stop from an ordinary ``docker stop``.
    """
    if not socket_path.startswith("unix://"):
        return True
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(socket_path.removeprefix("unix://"))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:  # a full backlog (a busy daemon) or the like: not a closed listener
            return True
    return True


_live_restore: dict[str, tuple[float, bool]] = {}
LIVE_RESTORE_TTL = 300.0


def live_restore(client: docker.DockerClient, socket_path: str) -> bool | None:
    """Whether the daemon keeps its containers running while it is stopped (``docker info``
    ``LiveRestoreEnabled``), read at most every five minutes; ``None`` if it does not answer."""
    now = time.monotonic()
    known = _live_restore.get(socket_path)
    if known is not None and now - known[0] < LIVE_RESTORE_TTL:
        return known[1]
    try:
        enabled = bool(client.info().get("LiveRestoreEnabled"))
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return known[1] if known is not None else None
    _live_restore[socket_path] = (now, enabled)
    return enabled


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
