"""One running container seen as an Airflow supervisor's child: the upstream ``ProcessTracker`` protocol.

:class:`ContainerProcess` is what the supervisor signals and waits on, whether the container was started
for this try (:mod:`.launcher`) or taken from the warm pool (:mod:`.pool`). A thread blocked in the
daemon's wait endpoint notices the exit, records how the container ended, removes it and its run
directory.
"""

from __future__ import annotations

import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import requests

from airflow_docker_runtime.container.client import remove_container
from airflow_docker_runtime.spec import RuntimeSpec


LOST = "lost the container: "
"""How an outcome starts when the daemon stopped answering before the container's exit was known."""


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
    claim: float = 0.0
    """Taking a ready container from the warm pool and handing it the channels (a pool hit only)."""
    pool: str = "off"
    """``hit`` (a pooled container served the try), ``miss`` (none was ready: cold start) or ``off``."""

    @property
    def total(self) -> float:
        return self.image + self.create + self.start + self.connect + self.claim

    def summary(self) -> str:
        if self.pool == "hit":
            return f"image={self.image:.3f}s claim={self.claim:.3f}s"
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

    def __init__(
        self, client: docker.DockerClient, container_id: str, spec: RuntimeSpec, run_dir: Path, name: str = ""
    ) -> None:
        self.client = client
        self.id = container_id
        self.name = name
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
        self._first: Callable[[], None] | None = None
        self.on_removed: list = []
        """Called (no arguments) once the container and its run directory are gone."""
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
            if self._first is not None:
                self._first()
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
                self.outcome = ContainerOutcome(exit_code=1, oom_killed=False, startup_logs=f"{LOST}{exc}")
            finally:
                self._exited.set()
                self._exit_notifier.close()
                if self.lifeline is not None:
                    self.lifeline.close()
            if self.spec.remove_container_after_exit:
                try:
                    remove_container(self.client, self.id)
                except Exception:  # the daemon went away: `gc` removes the exited container later
                    pass
        finally:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self._removed.set()
            for callback in self.on_removed:
                callback()

    def start_waiting(self, first: Callable[[], None] | None = None) -> None:
        """Start the thread that notices the container's exit (once the container has started); it runs
        ``first`` before it waits (one thread, not two, on the try's start path)."""
        self._first = first
        self._waiter.start()

    @property
    def waiting(self) -> bool:
        return self._waiter.is_alive()

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
