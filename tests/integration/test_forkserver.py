"""The parsing fork server on a real daemon: forked children are signalled and reaped; bad images fail cleanly."""

from __future__ import annotations

import os
import signal
import socket

import docker
import pytest

from airflow_docker_runtime.container import forkserver, process, rundir
from airflow_docker_runtime.errors import ContainerStartupError
from airflow_docker_runtime.spec import DEFAULTS, RuntimeSpec

pytestmark = pytest.mark.docker

IMAGE = "adr-test/base:latest"


def spec(**overrides) -> RuntimeSpec:
    base = {k: v for k, v in DEFAULTS.items() if k not in ("container_repository", "container_tag")}
    return RuntimeSpec(**{**base, "image": IMAGE, "pull_policy": "never", "fork_server": True, **overrides})


def request(test_id: str) -> dict:
    return {"kind": "parse", "name": f"adr-itest-{test_id}", "labels": {"test_id": test_id}, "bundle_paths": (), "environment": {}}


def test_children_are_forked_signalled_and_reaped_in_one_container(docker_client, test_id, short_dir, monkeypatch):
    monkeypatch.setattr(rundir, "RUN_DIR_BASE", short_dir / "runs")
    pairs = [[socket.socketpair() for _ in range(4)] for _ in range(2)]
    server, new = forkserver.server_for(spec(), request(test_id))
    try:
        assert new and server.alive
        again, new_again = forkserver.server_for(spec(), request(test_id))
        assert again is server and not new_again  # one server per spec

        first = server.spawn(tuple(child for child, _ in pairs[0]))
        second = server.spawn(tuple(child for child, _ in pairs[1]))
        assert first.id == second.id == server.container.id and first.pid != second.pid > 0
        # Both children wait for their parse request; a signal reaches only the one it is for.
        first.send_signal(signal.SIGKILL)
        assert first.wait(30) == -signal.SIGKILL
        with pytest.raises(process.ContainerStillRunning):
            second.wait(0.5)
        second.stop()
        assert second.exited and server.alive
        assert docker_client.api.inspect_container(server.container.id)["State"]["Running"]
    finally:
        server.close()
        for pair in pairs:
            for a, b in pair:
                a.close()
                b.close()
    assert docker_client.containers.list(all=True, filters={"id": server.container.id}) == []


def test_an_image_without_airflow_fails_with_its_output_and_leaves_nothing(docker_client, test_id, short_dir, monkeypatch):
    monkeypatch.setattr(rundir, "RUN_DIR_BASE", short_dir / "runs")
    with pytest.raises(ContainerStartupError, match=r"/usr/bin/python3.*a Python with Airflow") as info:
        forkserver.server_for(spec(python="/usr/bin/python3"), request(test_id))
    # Its output: the version check at start names the missing package (or, without it, the import error).
    message = str(info.value)
    assert "apache-airflow-task-sdk (not installed)" in message or "ModuleNotFoundError" in message or "(no longer available)" in message
    mine = ["airflow-docker-runtime.fork_server=true", f"airflow-docker-runtime.supervisor_pid={os.getpid()}"]
    assert docker_client.containers.list(all=True, filters={"label": mine}) == []
    assert list((short_dir / "runs").iterdir()) == []


@pytest.fixture(autouse=True)
def _no_servers_left(docker_client: docker.DockerClient):
    yield
    forkserver._stop_all()
