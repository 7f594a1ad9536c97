"""The Docker daemon failing around and during a try, on a private daemon (tests/support/private_daemon.py).

Real containers, the real bootstrap and task runner in them, the worker-side launcher and waiter; the
supervisor's place is taken by the test, which holds the parent ends of the four channels.
"""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from airflow_docker_runtime.container import client as client_module, forkserver, launcher, rundir
from airflow_docker_runtime.container import process as process_module
from airflow_docker_runtime.container.process import LOST, ContainerProcess
from airflow_docker_runtime.errors import DaemonUnreachable
from tests.unit.factories import make_spec

pytestmark = pytest.mark.docker

IMAGE = "adr-test/base:latest"


@pytest.fixture
def run_base(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    base = short_dir / "runs"
    monkeypatch.setattr(rundir, "RUN_DIR_BASE", base)
    return base


@pytest.fixture(autouse=True)
def _knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The timing knobs small, so faults resolve in seconds; a fresh client per test (it reads daemon_timeout)."""
    monkeypatch.setenv("AIRFLOW__DOCKER_RUNTIME__DAEMON_TIMEOUT", "3")
    monkeypatch.setenv("AIRFLOW__DOCKER_RUNTIME__DAEMON_REATTACH_WINDOW", "30")
    monkeypatch.setattr(client_module, "_clients", {})
    monkeypatch.setattr(client_module, "_live_restore", {})
    monkeypatch.setattr(process_module, "WAIT_POLL", 1.0)  # a wait that times out is no news, not a broken daemon


def spec_for(daemon, **overrides):
    return make_spec(image=IMAGE, socket_path=daemon.url, pull_policy="never", warm_pool_size=0, stop_timeout=2,
                     **overrides)


def start_try(daemon, test_id: str, **overrides) -> tuple[ContainerProcess, list[socket.socket]]:
    """Launch a task container as the coordinator does; its task runner then waits for its start-up message."""
    pairs = [socket.socketpair() for _ in range(4)]
    request = {"kind": "task", "name": f"adr-fault-{test_id}", "labels": {"test_id": test_id}}
    process, _, _ = launcher.launch(spec_for(daemon, **overrides), request, tuple(c for c, _ in pairs), host_env={})
    for child, _ in pairs:
        child.close()
    return process, [parent for _, parent in pairs]


def containers_named(daemon, test_id: str) -> list[str]:
    return [c["Names"][0] for c in daemon.client().api.containers(all=True, filters={"name": f"adr-fault-{test_id}"})]


def run_dirs(base: Path) -> list[Path]:
    return list(base.iterdir()) if base.exists() else []


def end_try(process: ContainerProcess, parents: list[socket.socket]) -> int:
    """Close the supervisor's ends: the task runner reads EOF and exits by itself."""
    for sock in parents:
        sock.close()
    return process.wait(timeout=30)


def test_stopped_daemon_fails_a_launch_at_once_and_serves_the_next_when_back(private_daemon, run_base, test_id):
    private_daemon.start()
    process, parents = start_try(private_daemon, test_id)  # the cached client now exists
    end_try(process, parents)
    process.stop()

    private_daemon.stop()
    started = time.monotonic()
    with pytest.raises(DaemonUnreachable, match=re.escape(f"Docker daemon at {private_daemon.url} does not answer")):
        start_try(private_daemon, test_id)
    assert time.monotonic() - started < 3
    assert run_dirs(run_base) == []

    private_daemon.start()  # the same process, the same cached client: no restart of anything
    process, parents = start_try(private_daemon, test_id)
    assert end_try(process, parents) is not None and not process.outcome.startup_logs.startswith(LOST)
    process.stop()
    assert containers_named(private_daemon, test_id) == [] and run_dirs(run_base) == []


def test_hung_daemon_fails_a_launch_within_daemon_timeout(private_daemon, run_base, test_id):
    private_daemon.start()
    private_daemon.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(DaemonUnreachable, match=re.escape(f"Docker daemon at {private_daemon.url} does not answer")):
            start_try(private_daemon, test_id)
        elapsed = time.monotonic() - started
    finally:
        private_daemon.thaw()
    assert 2.5 < elapsed < 10, f"daemon_timeout=3 but the launch failed after {elapsed:.1f}s"
    assert run_dirs(run_base) == []


def test_daemon_stopped_during_a_try_without_live_restore(private_daemon, run_base, test_id):
    private_daemon.start()
    process, parents = start_try(private_daemon, test_id)
    assert not process.exited

    stopping = threading.Thread(target=private_daemon.stop)
    started = time.monotonic()
    stopping.start()
    code = process.wait(timeout=20)
    elapsed = time.monotonic() - started
    stopping.join()

    # The daemon stopped the container (within its stop_timeout=2, set at create, not Docker's 10 s).
    assert process.outcome.startup_logs.startswith(LOST), process.outcome
    assert code == 1 and elapsed < 8, f"the try ended {elapsed:.1f}s after the daemon began to stop"
    process.stop()
    assert run_dirs(run_base) == []  # the run directory went with the container

    private_daemon.start()  # the exited container is removed by its owner once the daemon answers
    private_daemon.wait_for(lambda: containers_named(private_daemon, test_id) == [], 30,
                            "the container the daemon stopped was not removed after it came back")
    for sock in parents:
        sock.close()


def test_daemon_hung_during_a_try_ends_it_once_the_container_is_gone(private_daemon, run_base, test_id):
    private_daemon.start()
    process, parents = start_try(private_daemon, test_id)
    private_daemon.freeze()
    try:
        started = time.monotonic()
        code = end_try(process, parents)  # the task runner exits; the frozen daemon cannot say so
        elapsed = time.monotonic() - started
    finally:
        private_daemon.thaw()
    assert process.outcome.startup_logs.startswith(LOST) and code == 1, process.outcome
    assert elapsed < 10, f"the try ended {elapsed:.1f}s after its container exited under a hung daemon"
    process.stop()
    private_daemon.wait_for(lambda: containers_named(private_daemon, test_id) == [], 30,
                            "the container was not removed after the daemon answered again")
    assert run_dirs(run_base) == []


def test_live_restore_the_try_survives_a_daemon_restart(private_daemon, run_base, test_id):
    private_daemon.start(live_restore=True)
    try:
        process, parents = start_try(private_daemon, test_id, remove_container_after_exit=False)
        time.sleep(2.5)  # a few waits time out (WAIT_POLL=1): no news, not a re-attach
        assert process.reattached == 0 and not process.exited
        private_daemon.stop()
        time.sleep(1)
        assert not process.exited  # a broken wait connection is not the container's exit
        private_daemon.start(live_restore=True)
        private_daemon.wait_for(lambda: process.reattached, 15, "the waiter did not re-attach to the container")
        assert not process.exited

        code = end_try(process, parents)
        real = private_daemon.client().api.inspect_container(process.id)["State"]["ExitCode"]
        assert (process.outcome.exit_code, process.outcome.startup_logs) == (real, "")
        assert code == real
        private_daemon.client().api.remove_container(process.id, force=True)
        process.stop()
        assert run_dirs(run_base) == []
    finally:
        private_daemon.start()


def test_parsing_fork_server_is_replaced_after_the_daemon_stopped_under_it(private_daemon, run_base, test_id):
    # What the DAG processor's parse children go through: a parse while the daemon is away fails at once
    # with DaemonUnreachable (the file's import error); the next one after it is back gets a new server.
    private_daemon.start()
    spec = spec_for(private_daemon, fork_server=True)
    request = {"kind": "parse", "name": f"adr-fault-{test_id}", "labels": {"test_id": test_id}, "bundle_paths": (),
               "environment": {}}
    pairs = [socket.socketpair() for _ in range(4)]
    try:
        child, _, _ = forkserver.launch_forked(spec, request, tuple(c for c, _ in pairs))
        server, new = forkserver.server_for(spec, request)
        assert not new and server.alive

        private_daemon.stop()
        assert child.wait(15) == -signal.SIGKILL and child.outcome.startup_logs == "the fork server exited"
        private_daemon.wait_for(lambda: not server.alive, 15, "the fork server still counts as alive")
        with pytest.raises(DaemonUnreachable, match="does not answer"):
            forkserver.launch_forked(spec, request, tuple(c for c, _ in pairs))

        private_daemon.start()
        again, _, _ = forkserver.launch_forked(spec, request, tuple(c for c, _ in pairs))
        assert again.server is not server and again.server.alive
    finally:
        forkserver._stop_all()
        for pair in pairs:
            for sock in pair:
                sock.close()
    servers = {"label": "airflow-docker-runtime.fork_server=true"}  # the private daemon runs nothing else
    private_daemon.wait_for(lambda: private_daemon.client().api.containers(all=True, filters=servers) == [], 30,
                            "a fork server was left behind")
    assert run_dirs(run_base) == []


def test_a_daemon_away_longer_than_the_reattach_window_ends_the_try_and_the_container(private_daemon, run_base, test_id,
                                                                                      monkeypatch):
    monkeypatch.setenv("AIRFLOW__DOCKER_RUNTIME__DAEMON_REATTACH_WINDOW", "3")
    private_daemon.start(live_restore=True)  # the container outlives the daemon's stop
    try:
        process, parents = start_try(private_daemon, test_id)
        init = process.host_pid
        started = time.monotonic()
        private_daemon.stop()
        assert process.wait(timeout=20) == 1 and process.outcome.startup_logs.startswith(LOST), process.outcome
        assert 3 <= time.monotonic() - started < 8, process.outcome  # the window, counted from the break
        # Given up, its lifeline closed: the container stops itself although no daemon can stop it.
        private_daemon.wait_for(lambda: process_module.process_start_ticks(init) is None, 15,
                                "the container given up still runs")
        private_daemon.start(live_restore=True)
        private_daemon.wait_for(lambda: containers_named(private_daemon, test_id) == [], 30,
                                "the container was not removed after the daemon came back")
        assert run_dirs(run_base) == []
        for sock in parents:
            sock.close()
    finally:
        private_daemon.start()
