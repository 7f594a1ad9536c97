"""Plugging a container into Airflow's supervisor: one mechanism for task runners and DAG-file parsers.

Upstream ``WatchedSubprocess.start`` creates four socketpairs and ``fork()``\\ s. :func:`start_in_container`
does the same except that the child ends go to a container (see :mod:`.launcher`); everything after that
-- reading logs, serving requests, heartbeats, timeouts, final state -- is the upstream supervisor's code.
"""

from __future__ import annotations

import selectors
import signal
import threading
import time
from socket import socketpair
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_docker_runtime.container.launcher import launch
from airflow_docker_runtime.container.process import LOST, ContainerProcess, Timings
from airflow_docker_runtime.errors import DockerRuntimeError
from airflow_docker_runtime.inside.bootstrap import VERSION_MISMATCH
from airflow_docker_runtime.spec import format_size

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from airflow_docker_runtime.spec import RuntimeSpec


def start_in_container(
    cls: type,
    *,
    spec: RuntimeSpec,
    request_args: dict[str, Any],
    logger: FilteringBoundLogger,
    launcher: Callable[..., tuple[Any, Timings, dict[str, Any]]] = launch,
    **constructor_kwargs: Any,
):
    """Build an instance of the upstream ``WatchedSubprocess`` subclass ``cls`` whose child is a container
    (``launcher``: :func:`.launcher.launch`, or a fork server's ``launch_forked``)."""
    child_stdout, read_stdout = socketpair()
    child_stderr, read_stderr = socketpair()
    child_requests, read_requests = socketpair()
    child_logs, read_logs = socketpair()
    parent_ends = (read_stdout, read_stderr, read_requests, read_logs)
    try:
        container, timings, image = launcher(spec, request_args, (child_requests, child_stdout, child_stderr, child_logs))
    except BaseException:
        for sock in parent_ends:
            sock.close()
        raise
    finally:
        for sock in (child_requests, child_stdout, child_stderr, child_logs):
            sock.close()

    logger.info(
        "Started container",
        image=spec.image,
        image_id=image.get("Id", ""),
        image_digests=image.get("RepoDigests") or [],
        container_id=container.id[:12],
        container_name=getattr(container, "name", request_args["name"]),
        limits=spec.limits_summary(),
        network_mode=spec.network_mode or "default",
        user=spec.run_as_user or "image default",
        start_seconds=round(timings.total, 3),
        timings=timings.summary(),
        pool=timings.pool,
        **({"claim_seconds": round(timings.claim, 3)} if timings.pool == "hit" else {}),
    )
    proc = cls(
        pid=container.pid,
        stdin=read_requests,
        process=container,
        process_log=logger,
        start_time=time.monotonic(),
        container=container,
        **constructor_kwargs,
    )
    proc._register_pipe_readers(read_stdout, read_stderr, read_requests, read_logs, data={})
    proc.selector.register(container.exit_signal, selectors.EVENT_READ, (_eof, proc.selector.unregister))
    return proc


def log_runtime_error(log: FilteringBoundLogger, exc: Exception) -> None:
    """Log a failure before the child started: our own errors as a message, anything else with its traceback."""
    if isinstance(exc, DockerRuntimeError):
        log.error(f"Docker runtime: {exc}", error_type=type(exc).__name__)
    else:
        log.exception(f"Docker runtime: unexpected {type(exc).__name__}: {exc}", error_type=type(exc).__name__)


def version_mismatch_error(image: str, output: str) -> str:
    """The error for a container that exited with :data:`VERSION_MISMATCH`: the bootstrap's line from
    ``output`` (the container's log), naming the image; without it, the worker's side of the story."""
    for line in output.splitlines():
        if line.startswith("airflow-docker-runtime: image has "):
            return f"Docker runtime: image {image!r} has {line.partition('image has ')[2]}"
    from airflow_docker_runtime.container.docker_args import worker_versions

    return (
        f"Docker runtime: image {image!r} does not have this worker's Airflow minor version "
        f"({worker_versions()}); the container's own message is in its log"
    )


def _eof(sock) -> bool:
    """Selector handler for the container's exit signal: there is never more to read."""
    return False


class ContainerChildMixin:
    """
    Behaviour shared by the container-backed task runner and DAG-file parser supervisors.

    Expects an attrs field ``container: ContainerProcess`` on the class it is mixed into.
    """

    __slots__ = ()
    container: ContainerProcess

    def _check_subprocess_exit(self, raise_on_timeout: bool = False, expect_signal: int | None = None):
        first = self._exit_code is None  # type: ignore[attr-defined]
        code = super()._check_subprocess_exit(raise_on_timeout=raise_on_timeout, expect_signal=expect_signal)  # type: ignore[misc]
        if first and code is not None:
            self._log_container_exit()
        return code

    def _log_container_exit(self) -> None:
        container = self.container
        outcome = container.outcome
        if outcome is None:
            return
        log: FilteringBoundLogger = self.process_log  # type: ignore[attr-defined]
        peak = format_size(container.peak_memory) if container.peak_memory else "unknown"
        if outcome.startup_logs.startswith(LOST):
            log.error(
                f"Docker runtime: the Docker daemon at {container.spec.socket_path} went away while the container ran; "
                "its exit code is unknown",
                container_id=container.id[:12],
                detail=outcome.startup_logs[len(LOST):].strip()[:300],
            )
        elif outcome.exit_code == VERSION_MISMATCH and not outcome.oom_killed:
            log.error(
                version_mismatch_error(container.spec.image, outcome.startup_logs),
                container_id=container.id[:12],
                exit_code=outcome.exit_code,
            )
        elif outcome.oom_killed:
            log.error(
                f"Container killed: out of memory, limit {format_size(container.spec.memory) if container.spec.limit_resource else 'none'}",
                container_id=container.id[:12],
                exit_code=outcome.exit_code,
                oom_killed=True,
            )
        else:
            log.info(
                "Container exited",
                container_id=container.id[:12],
                exit_code=outcome.exit_code,
                oom_killed=False,
                peak_memory=peak,
            )

    def _monitor_subprocess(self):
        # Upstream wait() forwards SIGTERM/SIGINT (a worker being stopped) with os.kill(self.pid): for a
        # container that is its init on the host, which a worker not running as root may not signal.
        # Forward through the daemon instead; the handlers upstream saved are restored by wait() as usual.
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._forward_signal_to_container)
        return super()._monitor_subprocess()  # type: ignore[misc]

    def _forward_signal_to_container(self, signum: int, frame: Any) -> None:
        log: FilteringBoundLogger = self.process_log  # type: ignore[attr-defined]
        log.info("Received signal, forwarding to the container", signal=signal.Signals(signum).name, container_id=self.container.id[:12])
        try:
            self.container.send_signal(signum)
        except Exception as exc:  # the daemon may be gone too; the supervisor must go on supervising
            log.warning("Could not forward the signal to the container", signal=signal.Signals(signum).name, error=str(exc))

    def kill(self, signal_to_send: signal.Signals = signal.SIGINT, escalation_delay: float = 5.0, force: bool = False):
        # "SIGKILL after stop_timeout": the operator's grace period replaces the supervisor's fixed delay.
        return super().kill(signal_to_send, escalation_delay=self.container.spec.stop_timeout, force=force)  # type: ignore[misc]
