"""One running container seen as an Airflow supervisor's child: the upstream ``ProcessTracker`` protocol.

:class:`ContainerProcess` is what the supervisor signals and waits on, whether the container was started
for this try (:mod:`.launcher`) or taken from the warm pool (:mod:`.pool`). A thread blocked in the
daemon's wait endpoint notices the exit, records how the container ended, removes it and its run
directory.
"""

from __future__ import annotations

import os
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
import urllib3.exceptions

from airflow_docker_runtime.container import gc
from airflow_docker_runtime.container.client import daemon_listens, live_restore, remove_container
from airflow_docker_runtime.container.owner import process_start_ticks
from airflow_docker_runtime.spec import RuntimeSpec


LOST = "lost the container: "
"""How an outcome starts when the daemon went away while the container ran and its real exit is unknown."""

WAIT_POLL = 30.0
"""Seconds one wait call may block before the waiter checks the container's init itself (a hung daemon
never answers a wait)."""

DAEMON_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)
"""What a call to a daemon that is stopping, stopped or restarting raises (refused, reset, timed out, 5xx)."""


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


def _timed_out(exc: Exception) -> bool:
    """A read timeout: requests' own, or urllib3's inside a ConnectionError (docker-py's unix socket transport)."""
    return isinstance(exc, requests.exceptions.ReadTimeout) or bool(
        exc.args and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError)
    )


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
        self.reattached = 0
        self._init_ticks: int | None = None
        """How often the wait connection broke and the waiter found the container running again (live-restore)."""
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
        except requests.exceptions.RequestException:
            # The daemon is away (stopping, restarting): signal the container's init directly where this
            # process may; otherwise the waiter ends the try within daemon_reattach_window.
            if self.host_pid > 0:
                try:
                    os.kill(self.host_pid, int(sig))
                except OSError:
                    pass

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
                self.outcome = self._follow_to_exit()
            except Exception as exc:  # never a hung supervisor: whatever happened is an outcome
                self.outcome = ContainerOutcome(exit_code=1, oom_killed=False, startup_logs=f"{LOST}{exc}")
            finally:
                self._exited.set()
                self._exit_notifier.close()
                if self.lifeline is not None:  # a container given up stops itself (ADR 0005)
                    self.lifeline.close()
            if self.spec.remove_container_after_exit:
                try:
                    remove_container(self.client, self.id)
                except Exception:  # the daemon is away: removed when it answers again
                    gc.remove_later(self.client, self.spec.socket_path, self.id)
        finally:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self._removed.set()
            for callback in self.on_removed:
                callback()

    def _follow_to_exit(self) -> ContainerOutcome:
        """Block until the container exits; read its exit code, OOM flag and (if it never connected) output.

        The daemon going away is not the container's exit. A daemon stopping without live-restore first
        closes its listener, then stops its containers while still answering on open connections: an exit
        seen while it refuses new connections is :data:`LOST`. A broken connection (the daemon stopped,
        restarted or crashed) is followed by asking again, backing off from 0.1 s to 2 s, for up to
        ``[docker_runtime] daemon_reattach_window``: with live-restore the container is found running
        (wait again) or exited (its real exit code); without it the daemon stopped it, so the outcome is
        :data:`LOST` as soon as its init is gone from this host or the daemon reports it exited.
        """
        live = live_restore(self.client, self.spec.socket_path)  # known before the daemon may go away
        broke_at: float | None = None
        window = delay = 0.0
        while True:
            try:
                if broke_at is not None:  # is the daemon back, and how is the container?
                    state = self.client.api.inspect_container(self.id)["State"]
                    if state.get("Running"):
                        self.reattached += 1
                        broke_at = None
                    elif not live:
                        return ContainerOutcome(1, False, f"{LOST}the daemon stopped the container (exit code {state.get('ExitCode')})")
                try:
                    result = self.client.api.wait(self.id, timeout=WAIT_POLL)
                except requests.exceptions.RequestException as exc:
                    if _timed_out(exc) and broke_at is None and self._init_alive() is not False:
                        continue  # no news: the container runs
                    raise  # broken, or its init is gone and the daemon does not say so: the daemon hangs
                if not live and not daemon_listens(self.spec.socket_path):
                    return ContainerOutcome(1, False, f"{LOST}the daemon stopped the container as it shut down "
                                                      f"(exit code {result.get('StatusCode')})")
                state = self.client.api.inspect_container(self.id)["State"]
                logs = ""
                if not self.connected:
                    logs = self.client.api.logs(self.id, tail=40).decode(errors="replace")
            except docker.errors.NotFound:
                return ContainerOutcome(1, False, f"{LOST}the container was removed by someone else")
            except DAEMON_ERRORS as exc:
                if broke_at is None:
                    from airflow_docker_runtime.layers import daemon_reattach_window

                    broke_at, window, delay = time.monotonic(), daemon_reattach_window(), 0.1
                if (self._init_alive() is False and not live) or time.monotonic() - broke_at >= window:
                    return ContainerOutcome(1, False, f"{LOST}{exc}")
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            return ContainerOutcome(
                exit_code=int(state.get("ExitCode", result.get("StatusCode", 1))),
                oom_killed=bool(state.get("OOMKilled")),
                startup_logs=logs,
            )

    def _init_alive(self) -> bool | None:
        """Whether the container's init still runs, seen from this host's process table (the daemon may be
        away); ``None`` before its PID is known."""
        if self.host_pid <= 0:
            return None
        ticks = process_start_ticks(self.host_pid)
        if self._init_ticks is None:
            self._init_ticks = ticks
        return ticks is not None and ticks == self._init_ticks

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
            except DAEMON_ERRORS:  # gone already, or the daemon is away: the waiter decides
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
