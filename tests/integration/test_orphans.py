"""A supervisor that dies without cleaning up: the container stops itself, and `gc` removes what is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from airflow_docker_runtime.container import gc, owner
from airflow_docker_runtime.container.docker_args import LABEL_PREFIX
from tests.support.orphans import TEST_LABEL, dead_owner_labels, managed_container, remove_test_containers
from tests.support.stack import VENV_BIN, wait_for

pytestmark = pytest.mark.docker

IMAGE = "adr-test/base:latest"

# A stand-in for a worker's supervisor: launches one task container exactly as the coordinator does,
# prints its id, and then just lives (the container's task runner waits for its start-up message).
SUPERVISOR = textwrap.dedent(
    """
    import socket, sys, time
    from pathlib import Path
    from airflow_docker_runtime.container import launcher, rundir
    from airflow_docker_runtime.container.owner import owner_labels
    from airflow_docker_runtime.spec import DEFAULTS, RuntimeSpec

    rundir.RUN_DIR_BASE = Path(sys.argv[3])
    pairs = [socket.socketpair() for _ in range(4)]
    spec = RuntimeSpec(**{k: v for k, v in DEFAULTS.items() if k not in ("container_repository", "container_tag", "pull_policy", "warm_pool_size")},
                       image=sys.argv[1], pull_policy="never", warm_pool_size=0)
    request = {"kind": "task", "name": "adr-itest-" + sys.argv[2], "labels": {**owner_labels(), "test_id": sys.argv[2]}}
    process, _, _ = launcher.launch(spec, request, tuple(child for child, _ in pairs), host_env={})
    print(process.id, flush=True)
    time.sleep(600)
    """
)


def test_sweep_removes_orphans_only(docker_client, test_id):
    # A host name of its own: a worker sweeping this machine meanwhile (gc_on_start) leaves these alone.
    host = f"adr-itest-{test_id}"
    mine = {**owner.owner_labels(), "worker": host}
    dead = dead_owner_labels(host)
    try:
        orphan = managed_container(docker_client, test_id, "orphan", dead)
        exited_orphan = managed_container(docker_client, test_id, "exited-orphan", dead, running=False)
        alive = managed_container(docker_client, test_id, "alive", mine)
        other_host = managed_container(docker_client, test_id, "other-host", {**dead, "worker": "some-other-host"})
        kept_running = managed_container(docker_client, test_id, "kept-running", {**dead, "keep": "true"})
        kept_exited = managed_container(docker_client, test_id, "kept-exited", {**dead, "keep": "true"}, running=False)

        dry = {f.name: f.action for f in gc.sweep(docker_client, dry_run=True, host=host)}
        assert dry[orphan.name] == dry[exited_orphan.name] == "would remove"
        assert dry[kept_running.name] == "would stop"
        assert docker_client.containers.get(orphan.id).status == "running"  # a dry run touches nothing

        findings = {f.name: f for f in gc.sweep(docker_client, host=host)}
        assert findings[orphan.name].action == findings[exited_orphan.name].action == "removed"
        assert findings[orphan.name].reason == f"supervisor pid {dead['supervisor_pid']} is gone"
        assert (findings[alive.name].action, findings[alive.name].reason) == ("left", f"supervisor pid {os.getpid()} is alive")
        assert findings[other_host.name].action == findings[kept_exited.name].action == "left"
        assert findings[kept_running.name].action == "stopped"

        remaining = {c.name: c.status for c in docker_client.containers.list(all=True, filters={"label": f"{TEST_LABEL}={test_id}"})}
        assert remaining == {alive.name: "running", other_host.name: "running", kept_running.name: "exited",
                             kept_exited.name: "created"}

        assert {f.name: f.action for f in gc.sweep(docker_client, include_kept=True, host=host)}[kept_running.name] == "removed"
    finally:
        remove_test_containers(docker_client, test_id)


def test_container_stops_when_its_supervisor_is_killed_and_gc_removes_it(tmp_path, short_dir, docker_client, test_id):
    run_base = short_dir / "runs"
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, IMAGE, test_id, str(run_base)], stdout=subprocess.PIPE, text=True,
    )
    try:
        container_id = supervisor.stdout.readline().strip()
        assert container_id, "the stand-in supervisor did not launch a container"
        container = docker_client.containers.get(container_id)
        assert container.status == "running"
        assert container.labels[f"{LABEL_PREFIX}.supervisor_pid"] == str(supervisor.pid)
        assert len(list(run_base.iterdir())) == 1

        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait(timeout=10)
        killed = time.monotonic()
        wait_for(lambda: docker_client.api.inspect_container(container_id)["State"]["Status"] == "exited",
                 timeout=15, interval=0.1, what="the container to stop after its supervisor died")
        stopped_after = time.monotonic() - killed
        print(f"container stopped {stopped_after:.2f}s after its supervisor was killed")
        assert "the supervisor is gone" in docker_client.api.logs(container_id).decode()
        assert docker_client.api.inspect_container(container_id)["State"]["ExitCode"] == 70

        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env["AIRFLOW_HOME"] = str(tmp_path / "home")
        result = subprocess.run(
            [str(VENV_BIN / "airflow"), "docker-runtime", "gc", "-o", "json"], env=env, capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout[result.stdout.index("{"):])
        row = next(r for r in report["containers"] if r["name"] == f"adr-itest-{test_id}")
        assert (row["action"], row["reason"]) == ("removed", f"supervisor pid {supervisor.pid} is gone")
        assert docker_client.containers.list(all=True, filters={"id": container_id}) == []
        assert gc.sweep_run_dirs(run_base) and list(run_base.iterdir()) == []
    finally:
        supervisor.kill()
        remove_test_containers(docker_client, test_id)


def test_a_container_whose_removal_failed_is_removed_by_the_next_sweep(docker_client, test_id, monkeypatch):
    """Its owner lives but did not remove it (the daemon was down at that moment): a sweep removes it once it
    has been exited for LEFT_BEHIND_SECONDS; a running one, or a kept one, is left."""
    host = f"adr-itest-{test_id}"
    alive = {**owner.owner_labels(), "worker": host}
    try:
        exited = managed_container(docker_client, test_id, "exited", alive, running=False)
        running = managed_container(docker_client, test_id, "running", alive)
        kept = managed_container(docker_client, test_id, "kept", {**alive, "keep": "true"}, running=False)
        assert {f.name: f.action for f in gc.sweep(docker_client, dry_run=True, host=host)}[exited.name] == "left"  # just exited

        monkeypatch.setattr(gc, "LEFT_BEHIND_SECONDS", 0.0)
        findings = {f.name: f for f in gc.sweep(docker_client, host=host)}
        assert findings[exited.name].action == "removed"
        assert "not removed by its owner" in findings[exited.name].reason
        assert findings[running.name].action == findings[kept.name].action == "left"
    finally:
        remove_test_containers(docker_client, test_id)


def test_a_failed_sweep_is_tried_again_and_a_successful_one_waits_for_the_interval(monkeypatch):
    calls = []

    def sweep(client, **kwargs):
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise ConnectionError("the daemon is down")
        return []

    monkeypatch.setattr(gc, "sweep", sweep)
    monkeypatch.setattr(gc, "docker_client", lambda path: object())
    monkeypatch.setattr(gc, "sweep_run_dirs", lambda: [])
    path = f"unix:///tmp/adr-itest-{time.monotonic_ns()}.sock"
    for expected in (1, 2):  # the first fails: the next call sweeps again
        gc.sweep_in_background(path, every=3600).join()
        assert len(calls) == expected
    assert gc.sweep_in_background(path, every=3600) is None  # succeeded just now: not due
    assert gc.sweep_in_background(path, every=0.0) is not None  # due at once with a zero interval
