"""Where the container is started: launch a container as an Airflow supervisor's child.

Shared by task execution and DAG parsing. :func:`launch` takes a ready container from the warm pool
(:mod:`.pool`) when the spec has one, and otherwise starts one: it creates the per-run directory with one
unix socket (:mod:`.rundir`), starts the container, waits for its bootstrap to connect from inside that
container, and passes it the child ends of the supervisor's four channels (SCM_RIGHTS). The returned
:class:`~.process.ContainerProcess` is an upstream ``ProcessTracker``: the supervisor signals and waits
on it as if it were a forked child.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from airflow_docker_runtime import inside
from airflow_docker_runtime.container import pool
from airflow_docker_runtime.container.client import docker_client, ensure_image, remove_container
from airflow_docker_runtime.container.docker_args import LaunchRequest, create_kwargs
from airflow_docker_runtime.container.process import ContainerProcess, Timings
from airflow_docker_runtime.container.rundir import HANDSHAKE, RunDir
from airflow_docker_runtime.container.volumes import ensure_volumes_exist
from airflow_docker_runtime.errors import ContainerStartupError, DaemonUnreachable, ImageNotFound
from airflow_docker_runtime.layers import host_environment
from airflow_docker_runtime.spec import RuntimeSpec

BOOTSTRAP_DIR = Path(inside.__file__).parent


def launch(
    spec: RuntimeSpec,
    request_args: dict[str, Any],
    child_ends: tuple[socket.socket, socket.socket, socket.socket, socket.socket] | None,
    *,
    host_env: Mapping[str, str] | None = None,
) -> tuple[ContainerProcess, Timings, dict[str, Any]]:
    """
    Start a container for ``spec`` and hand it ``child_ends`` (requests, stdout, stderr, logs).

    With ``child_ends=None`` (a fork server) nothing is handed over: the connection stays open as the
    server's control connection, ``process.lifeline``.

    ``request_args`` are :class:`LaunchRequest` fields other than ``run_dir`` and ``bootstrap_dir``.
    Returns the tracker, the launch timings and the image's inspect data. On any failure nothing is left
    behind: the container is removed and the run directory deleted.
    """
    timings = Timings()
    t0 = time.monotonic()
    client = docker_client(spec.socket_path)
    image = ensure_image(client, spec)
    ensure_volumes_exist(client, spec)  # a named volume that does not exist is refused, never created
    timings.image = time.monotonic() - t0
    env = host_env if host_env is not None else host_environment(spec.environment_variables_from_host)
    image_user = (image.get("Config") or {}).get("User") or None

    def kwargs_for(run_dir: Path) -> dict[str, Any]:
        request = LaunchRequest(run_dir=run_dir, bootstrap_dir=BOOTSTRAP_DIR, image_user=image_user, **request_args)
        return create_kwargs(spec, request, env)

    if child_ends is not None and pool.serves(spec, request_args["kind"]):
        claimed = pool.claim(client, spec, image, kwargs_for(pool.RUN_DIR_PLACEHOLDER), request_args["name"], child_ends)
        if claimed is not None:
            timings.claim, timings.pool = claimed[1], "hit"
            return claimed[0], timings, image
        timings.pool = "miss"

    run_dir = RunDir()
    process: ContainerProcess | None = None
    container_id: str | None = None
    try:
        kwargs = kwargs_for(run_dir.path)
        run_dir.listen(kwargs.get("user"))
        t1 = time.monotonic()
        try:
            container = _create(client, kwargs)
        except docker.errors.ImageNotFound:
            raise ImageNotFound(f"image {spec.image!r} is not on the Docker daemon") from None
        except docker.errors.APIError as exc:
            raise ContainerStartupError(f"Docker refused to create the container: {exc.explanation or exc}") from None
        container_id = container.id
        timings.create = time.monotonic() - t1
        process = ContainerProcess(client, container_id, spec, run_dir.path, name=request_args["name"])
        t2 = time.monotonic()
        try:
            container.start()
        except docker.errors.APIError as exc:
            raise ContainerStartupError(f"container for image {spec.image!r} failed to start: {exc.explanation or exc}") from None
        process.start_waiting()
        # The supervisor signals and reports this PID, and the peer check compares cgroups with it.
        process.host_pid = int(client.api.inspect_container(container_id)["State"].get("Pid") or 0)
        timings.start = time.monotonic() - t2
        t3 = time.monotonic()
        conn = accept_bootstrap(run_dir, process, spec)
        if child_ends is not None:
            socket.send_fds(conn, [HANDSHAKE], [s.fileno() for s in child_ends])
        adopt_lifeline(process, conn)
        timings.connect = time.monotonic() - t3
        return process, timings, image
    except requests.exceptions.RequestException as exc:
        _cleanup_failed_launch(client, process, container_id, run_dir)
        raise DaemonUnreachable(f"Docker daemon at {spec.socket_path} stopped answering: {exc}") from None
    except BaseException:
        _cleanup_failed_launch(client, process, container_id, run_dir)
        raise
    finally:
        run_dir.close()


def _create(client: docker.DockerClient, kwargs: dict[str, Any]):
    """``docker create``; a leftover of the same try (a crashed worker's) holding the name is removed first."""
    try:
        return client.containers.create(**kwargs)
    except docker.errors.APIError as exc:
        if exc.status_code != 409:
            raise
    remove_container(client, kwargs["name"])
    return client.containers.create(**kwargs)


def accept_bootstrap(run_dir: RunDir, process: ContainerProcess, spec: RuntimeSpec) -> socket.socket:
    """Wait for the bootstrap of ``process`` to connect; a clear :class:`ContainerStartupError` if it never does."""
    hint = f"is {spec.python!r} a Python with Airflow in image {spec.image!r}?"

    def exited() -> str | None:
        if not process.exited and process.host_pid > 0:
            return None
        if not process.exited:
            process._exited.wait(10)
        outcome = process.outcome
        output = outcome.startup_logs.strip() if outcome else ""
        if not output:
            try:
                output = process.client.api.logs(process.id, tail=40).decode(errors="replace").strip()
            except docker.errors.DockerException:  # already removed after its exit
                output = "(no longer available)"
        code = outcome.exit_code if outcome else "?"
        return f"the container exited with code {code} before connecting; {hint} Container output:\n{output}"

    try:
        return run_dir.accept(lambda: process.host_pid, time.monotonic() + spec.connect_timeout, exited)
    except ContainerStartupError as exc:
        if "in time" in str(exc):
            raise ContainerStartupError(
                f"the container did not connect back within connect_timeout={spec.connect_timeout:g}s ({hint})"
            ) from None
        raise


def adopt_lifeline(process: ContainerProcess, conn: socket.socket) -> None:
    """Keep the bootstrap's connection open for the container's life: when this process dies, the kernel
    closes it and the container stops itself (ADR 0005)."""
    process.lifeline = conn
    if process.exited:  # the waiter may have finished before the line above; close it here then
        conn.close()
    process.connected = True


def _cleanup_failed_launch(client, process: ContainerProcess | None, container_id: str | None, run_dir: RunDir) -> None:
    """Leave nothing behind after a launch that did not complete: no container, no run directory."""
    try:
        if process is not None and process.waiting:
            process.stop()
        elif container_id is not None:
            remove_container(client, container_id)
    except Exception:  # the daemon may be the thing that failed; the run directory still goes
        pass
    finally:
        if process is not None and process.lifeline is not None:
            process.lifeline.close()
        run_dir.remove()
