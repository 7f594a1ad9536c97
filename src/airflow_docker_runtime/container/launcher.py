"""Where the container is started: launch a container as an Airflow supervisor's child and track it.

Shared by task execution and DAG parsing. :func:`launch` creates the per-run directory with one unix
socket, starts the container, waits for its bootstrap to connect, checks the peer really is inside that
container, and passes it the child ends of the supervisor's four channels (SCM_RIGHTS). The returned
:class:`ContainerProcess` is an upstream ``ProcessTracker``: the supervisor signals and waits on it as if
it were a forked child.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from airflow_docker_runtime import inside
from airflow_docker_runtime.container import owner
from airflow_docker_runtime.container.docker_args import SOCKET_NAME, LaunchRequest, create_kwargs
from airflow_docker_runtime.errors import ContainerStartupError, DaemonUnreachable, ImageNotFound
from airflow_docker_runtime.layers import host_environment
from airflow_docker_runtime.spec import RuntimeSpec

HANDSHAKE = b"airflow-docker-runtime/1"
RUN_DIR_BASE = Path(tempfile.gettempdir()) / "airflow-docker-runtime"
"""Per-run directories live here. The Docker daemon must see the same path (a local daemon)."""
BOOTSTRAP_DIR = Path(inside.__file__).parent
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the terminating NUL

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
    except docker.errors.DockerException as exc:
        raise DaemonUnreachable(f"Docker daemon at {spec.socket_path} failed: {exc}") from None
    try:
        client.api.pull(spec.image)
        return client.api.inspect_image(spec.image)
    except docker.errors.DockerException as exc:
        reason = getattr(exc, "explanation", None) or str(exc)
        raise ImageNotFound(f"image {spec.image!r} is not on the Docker daemon and pulling it failed: {reason}") from None


class ContainerGone(Exception):
    """The tracker's ``ProcessNotFound``, required by the protocol. Never raised: signalling a container
    that is already gone is a no-op, so the supervisor reads the real exit code from ``wait``."""


class ContainerStillRunning(Exception):
    """``wait(timeout)`` elapsed with the container still running (the tracker's ``TimeoutExpired``)."""


@dataclass
class ContainerOutcome:
    """How a container ended, read from ``docker inspect`` after it stopped."""

    exit_code: int
    oom_killed: bool
    startup_logs: str = ""


@dataclass
class Timings:
    """Seconds spent in each launch step (for the task log and benchmarks)."""

    image: float = 0.0
    create: float = 0.0
    start: float = 0.0
    connect: float = 0.0

    def summary(self) -> str:
        return f"image={self.image:.3f}s create={self.create:.3f}s start={self.start:.3f}s connect={self.connect:.3f}s"


def _exit_code_as_process(code: int, oom_killed: bool) -> int:
    """Docker's exit status in the form the supervisor expects from a child: negative for signals."""
    if oom_killed:
        return -signal.SIGKILL
    if 128 < code <= 128 + 64:
        return -(code - 128)
    return code


class ContainerProcess:
    """
    A running container seen as a child process (Airflow's ``ProcessTracker`` protocol).

    ``pid`` is the host PID of the container's init; ``send_signal`` goes through the daemon; ``wait`` is
    served by a thread blocked in the daemon's wait endpoint, so polling it costs nothing.
    """

    ProcessNotFound = ContainerGone
    TimeoutExpired = ContainerStillRunning

    def __init__(self, client: docker.DockerClient, container_id: str, spec: RuntimeSpec, run_dir: Path) -> None:
        self.client = client
        self.id = container_id
        self.spec = spec
        self.run_dir = run_dir
        self.host_pid = 0
        self.connected = False
        self.lifeline: socket.socket | None = None
        """The bootstrap's control connection, open for the container's life: when this process dies the
        kernel closes it and the container stops itself (inside/bootstrap.py)."""
        self.outcome: ContainerOutcome | None = None
        self.peak_memory: int | None = None
        self._last_sample = 0.0
        self._exited = threading.Event()
        # Closed by the waiter when the container exits: the supervisor's selector sees EOF and wakes up
        # at once instead of at its next heartbeat (a container's exit is not a child's SIGCHLD).
        self.exit_signal, self._exit_notifier = socket.socketpair()
        self._removed = threading.Event()
        self._waiter = threading.Thread(target=self._wait_for_exit, name=f"adr-wait-{container_id[:12]}", daemon=True)

    # -- ProcessTracker -------------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.host_pid

    def send_signal(self, sig: signal.Signals | int) -> None:
        # A signal to a container that already stopped is a no-op, not an error: the supervisor then reads
        # the real exit code from wait() instead of assuming the process vanished.
        if self._exited.is_set():
            return
        try:
            self.client.api.kill(self.id, signal=int(sig))
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: not running any more
                raise

    def wait(self, timeout: float | None) -> int:
        self._sample_memory()
        if not self._exited.wait(timeout):
            raise ContainerStillRunning(self.id)
        assert self.outcome is not None
        return _exit_code_as_process(self.outcome.exit_code, self.outcome.oom_killed)

    # -- lifecycle ------------------------------------------------------------------------------------
    def _wait_for_exit(self) -> None:
        try:
            try:
                result = self.client.api.wait(self.id)
                state = self.client.api.inspect_container(self.id)["State"]
                logs = ""
                if not self.connected:
                    logs = self.client.api.logs(self.id, tail=40).decode(errors="replace")
                self.outcome = ContainerOutcome(
                    exit_code=int(state.get("ExitCode", result.get("StatusCode", 1))),
                    oom_killed=bool(state.get("OOMKilled")),
                    startup_logs=logs,
                )
            except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                # The daemon went away or the container vanished: still an outcome, never a hung supervisor.
                self.outcome = ContainerOutcome(exit_code=1, oom_killed=False, startup_logs=f"lost the container: {exc}")
            finally:
                self._exited.set()
                self._exit_notifier.close()
                if self.lifeline is not None:
                    self.lifeline.close()
            if self.spec.remove_container_after_exit:
                remove_container(self.client, self.id)
        finally:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self._removed.set()

    def _sample_memory(self) -> None:
        """Keep the container's peak memory (read from its cgroup at most once a second)."""
        now = time.monotonic()
        if now - self._last_sample < 1.0 or self._exited.is_set():
            return
        self._last_sample = now
        value = read_peak_memory(self.spec, self.id)
        if value is not None:
            self.peak_memory = max(self.peak_memory or 0, value)

    def stop(self) -> None:
        """Make sure the container is gone: SIGTERM, SIGKILL after ``stop_timeout``; then wait for cleanup."""
        if not self._exited.is_set():
            try:
                self.client.api.stop(self.id, timeout=self.spec.stop_timeout)
            except docker.errors.DockerException:
                pass
            self._exited.wait(self.spec.stop_timeout + 30)
        self._removed.wait(60)

    @property
    def exited(self) -> bool:
        return self._exited.is_set()


def remove_container(client: docker.DockerClient, container_id: str) -> None:
    """Force-remove a container and its anonymous volumes; a container already gone is fine."""
    try:
        client.api.remove_container(container_id, force=True, v=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            raise


def read_peak_memory(spec: RuntimeSpec, container_id: str) -> int | None:
    """The container's peak memory from its cgroup (v1 ``max_usage_in_bytes`` or v2 ``memory.peak``)."""
    root = Path(spec.cgroup_mount_path)
    for path in (
        root / "memory" / spec.docker_cgroup_subpath / container_id / "memory.max_usage_in_bytes",
        root / spec.docker_cgroup_subpath / container_id / "memory.peak",
        root / "system.slice" / f"docker-{container_id}.scope" / "memory.peak",
    ):
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            continue
    return None


def _numeric_user(run_as_user: str | None) -> tuple[int, int] | None:
    uid, _, gid = (run_as_user or "").partition(":")
    if uid.isdigit() and (not gid or gid.isdigit()):
        return int(uid), int(gid) if gid else -1
    return None


def _make_run_dir(run_as_user: str | None) -> Path:
    """A private directory for one run's socket.

    With a numeric ``run_as_user`` only that uid (and the worker) may enter it. Otherwise the container's
    user is decided inside the image (a name, or the image's default such as uid 50000 in the official
    Airflow images), so the directory is traversable but not listable, its name is random, and the peer
    check in :func:`_hand_over` rejects any process outside the container.
    """
    RUN_DIR_BASE.mkdir(mode=0o711, parents=True, exist_ok=True)
    # The owner in the name lets `airflow docker-runtime gc` delete directories of dead supervisors.
    run_dir = Path(tempfile.mkdtemp(prefix=f"run-{owner.owner_tag()}-", dir=RUN_DIR_BASE))
    try:
        if (ids := _numeric_user(run_as_user)) is not None:
            os.chown(run_dir, *ids)
        else:
            run_dir.chmod(0o711)
    except OSError:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return run_dir


def _peer_is_in(conn: socket.socket, container_id: str) -> bool:
    """True when the process on the other end of ``conn`` belongs to the container's cgroup."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    pid = int.from_bytes(creds[:4], "little")
    try:
        return container_id in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


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
    timings.image = time.monotonic() - t0

    try:
        run_dir = _make_run_dir(spec.run_as_user)
    except OSError as exc:
        raise ContainerStartupError(f"cannot prepare the run directory under {RUN_DIR_BASE}: {exc}") from None
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    process: ContainerProcess | None = None
    container_id: str | None = None
    try:
        socket_path = run_dir / SOCKET_NAME
        if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
            raise ContainerStartupError(
                f"the run directory's socket path {socket_path} is longer than a unix socket allows "
                f"({MAX_SOCKET_PATH} bytes): point TMPDIR of the worker at a shorter directory"
            )
        listener.bind(str(socket_path))
        if _numeric_user(spec.run_as_user) is None:
            socket_path.chmod(0o666)
        listener.listen(1)
        listener.setblocking(False)

        request = LaunchRequest(run_dir=run_dir, bootstrap_dir=BOOTSTRAP_DIR, **request_args)
        kwargs = create_kwargs(spec, request, host_env if host_env is not None else host_environment(spec.environment_variables_from_host))
        remove_container(client, request.name)  # a leftover of the same try (crashed worker) must not block us
        t1 = time.monotonic()
        try:
            container = client.containers.create(**kwargs)
        except docker.errors.ImageNotFound:
            raise ImageNotFound(f"image {spec.image!r} is not on the Docker daemon") from None
        except docker.errors.APIError as exc:
            raise ContainerStartupError(f"Docker refused to create the container: {exc.explanation or exc}") from None
        container_id = container.id
        timings.create = time.monotonic() - t1
        process = ContainerProcess(client, container_id, spec, run_dir)
        t2 = time.monotonic()
        try:
            container.start()
        except docker.errors.APIError as exc:
            raise ContainerStartupError(f"container for image {spec.image!r} failed to start: {exc.explanation or exc}") from None
        process._waiter.start()
        timings.start = time.monotonic() - t2
        t3 = time.monotonic()
        _hand_over(listener, process, child_ends, spec)
        timings.connect = time.monotonic() - t3
        # The supervisor signals and reports this PID; it must be the container's init, never 0.
        process.host_pid = int(client.api.inspect_container(container_id)["State"].get("Pid") or 0)
        if process.host_pid <= 0:
            process._exited.wait(10)
            code = process.outcome.exit_code if process.outcome else "?"
            try:
                output = client.api.logs(container_id, tail=40).decode(errors="replace").strip()
            except docker.errors.DockerException:  # already removed after its exit
                output = "(no longer available)"
            raise ContainerStartupError(
                f"the container exited with code {code} right after connecting; is {spec.python!r} a Python with "
                f"Airflow in image {spec.image!r}? Container output:\n{output}"
            )
        return process, timings, image
    except requests.exceptions.RequestException as exc:
        _cleanup_failed_launch(client, process, container_id, run_dir)
        raise DaemonUnreachable(f"Docker daemon at {spec.socket_path} stopped answering: {exc}") from None
    except BaseException:
        _cleanup_failed_launch(client, process, container_id, run_dir)
        raise
    finally:
        listener.close()


def _cleanup_failed_launch(client, process: ContainerProcess | None, container_id: str | None, run_dir: Path) -> None:
    """Leave nothing behind after a launch that did not complete: no container, no run directory."""
    try:
        if process is not None and process._waiter.is_alive():
            process.stop()
        elif container_id is not None:
            remove_container(client, container_id)
    except Exception:  # the daemon may be the thing that failed; the run directory still goes
        pass
    finally:
        if process is not None and process.lifeline is not None:
            process.lifeline.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def _hand_over(listener: socket.socket, process: ContainerProcess, child_ends: tuple[socket.socket, ...] | None, spec: RuntimeSpec) -> None:
    deadline = time.monotonic() + spec.connect_timeout
    with selectors.DefaultSelector() as selector:
        selector.register(listener, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ContainerStartupError(
                    f"the container did not connect back within connect_timeout={spec.connect_timeout:g}s "
                    f"(is {spec.python!r} a Python with Airflow in image {spec.image!r}?)"
                )
            if process.exited:
                outcome = process.outcome
                detail = outcome.startup_logs.strip() if outcome else ""
                raise ContainerStartupError(
                    f"the container exited with code {outcome.exit_code if outcome else '?'} before connecting; "
                    f"is {spec.python!r} a Python with Airflow in image {spec.image!r}? Container output:\n{detail}"
                )
            if not selector.select(timeout=min(remaining, 0.05)):
                continue
            conn, _ = listener.accept()
            try:
                conn.setblocking(True)
                conn.settimeout(max(1.0, deadline - time.monotonic()))
                if not _peer_is_in(conn, process.id) or conn.recv(len(HANDSHAKE)) != HANDSHAKE:
                    conn.close()
                    continue
                if child_ends is not None:
                    socket.send_fds(conn, [HANDSHAKE], [s.fileno() for s in child_ends])
                conn.settimeout(None)
            except BaseException:
                conn.close()
                raise
            process.lifeline = conn  # kept open until the container exits: the container's lifeline
            if process.exited:  # the waiter may have finished before the line above; close it here then
                conn.close()
            process.connected = True
            return
