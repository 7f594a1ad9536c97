"""The warm pool on a real Docker daemon, without Airflow components: claims, gc, the pool's lifeline, a broken image."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator

import pytest

from airflow_docker_runtime.container import gc, launcher, pool
from airflow_docker_runtime.errors import ContainerStartupError
from airflow_docker_runtime.spec import DEFAULTS, RuntimeSpec
from tests.support.stack import wait_for

pytestmark = pytest.mark.docker

IMAGE = "adr-test/base:latest"
POOLED = "airflow-docker-runtime.pooled=true"


def spec(test_id: str, **overrides) -> RuntimeSpec:
    values = {k: v for k, v in DEFAULTS.items() if k in RuntimeSpec.model_fields}
    # A label of its own makes this test's key (and so its pooled containers) its own.
    values.update(image=IMAGE, pull_policy="never", python="/opt/airflow/venv/bin/python", labels={"test_id": test_id})
    values.update(overrides)
    return RuntimeSpec(**values)


@pytest.fixture
def channels() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    pairs = [socket.socketpair() for _ in range(4)]
    yield pairs
    for pair in pairs:
        for sock in pair:
            sock.close()


def start(the_spec: RuntimeSpec, name: str, pairs) -> tuple:
    return launcher.launch(the_spec, {"kind": "task", "name": name, "labels": {}}, tuple(c for c, _ in pairs), host_env={})


def pooled(docker_client, test_id: str, idle_only: bool = True) -> list[dict]:
    found = docker_client.api.containers(all=not idle_only, filters={"label": [POOLED, f"test_id={test_id}"]})
    return [c for c in found if not idle_only or c["Names"][0].startswith("/adr-pool-")]


def ready_pooled(docker_client, test_id: str) -> list[str]:
    log = pool.pool_address(DEFAULTS["socket_path"]).with_suffix(".log").read_text(errors="replace")
    return [c["Id"] for c in pooled(docker_client, test_id) if f"{c['Names'][0].lstrip('/')} ready" in log]


def finish(process) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    process.stop()


def test_a_miss_warms_the_pool_and_the_next_try_is_served_from_it(docker_client, channels, test_id):
    first, timings, _ = start(spec(test_id), f"adr-itest-{test_id}-1", channels)
    assert timings.pool == "miss"
    finish(first)
    wait_for(lambda: ready_pooled(docker_client, test_id), timeout=60, interval=0.1, what="a ready pooled container")

    pairs = [socket.socketpair() for _ in range(4)]
    try:
        second, timings, image = start(spec(test_id), f"adr-itest-{test_id}-2", pairs)
        assert (timings.pool, timings.create, timings.start) == ("hit", 0.0, 0.0)
        assert timings.claim < 0.5
        info = docker_client.api.inspect_container(second.id)
        assert info["Config"]["Image"] == image["Id"]  # created from the image id the claim was keyed on
        assert info["Config"]["Labels"]["airflow-docker-runtime.pooled"] == "true"
        wait_for(lambda: docker_client.api.inspect_container(second.id)["Name"] == f"/adr-itest-{test_id}-2", timeout=10,
                 what="the claimed container to carry the try's name")
        # The channels reached the task runner in the container: it reads its start-up message from `requests`.
        pairs[0][1].close()
        assert second.wait(30) != 0  # no start-up message: the task runner gives up, the container exits
        second.stop()
        assert not docker_client.api.containers(all=True, filters={"id": second.id})
    finally:
        for pair in pairs:
            for sock in pair:
                sock.close()


def test_gc_lists_pooled_containers_and_a_dead_pool_stops_them_at_once(docker_client, channels, test_id):
    first, _, _ = start(spec(test_id), f"adr-itest-{test_id}", channels)
    finish(first)
    wait_for(lambda: ready_pooled(docker_client, test_id), timeout=60, interval=0.1, what="a ready pooled container")

    findings = [f for f in gc.sweep(docker_client, dry_run=True) if f.id in {c["Id"][:12] for c in pooled(docker_client, test_id)}]
    assert findings and all(f.what.startswith("pooled") and f.action == "left" for f in findings), findings

    server_pid = int(docker_client.api.inspect_container(findings[0].id)["Config"]["Labels"]["airflow-docker-runtime.supervisor_pid"])
    os.kill(server_pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: not pooled(docker_client, test_id), timeout=5, interval=0.05, what="the pooled containers to stop")
    assert time.monotonic() - killed < 1.0
    removed = {f.id for f in gc.sweep(docker_client) if f.action == "removed"}
    assert {f.id for f in findings} <= removed
    assert not pooled(docker_client, test_id, idle_only=False)


def test_an_image_that_cannot_become_ready_is_not_warmed_and_the_try_says_why(docker_client, channels, test_id):
    broken = spec(test_id, python="/bin/false")
    log = pool.pool_address(DEFAULTS["socket_path"]).with_suffix(".log")
    seen = log.stat().st_size if log.exists() else 0
    with pytest.raises(ContainerStartupError, match="before connecting"):
        start(broken, f"adr-itest-{test_id}", channels)
    wait_for(lambda: "could not start a pooled container" in log.read_text()[seen:], timeout=60,
             what="the pool to give up on the broken image")
    with pytest.raises(ContainerStartupError, match="before connecting"):  # a miss again: the cold path reports the error
        start(broken, f"adr-itest-{test_id}", channels)
    assert not pooled(docker_client, test_id, idle_only=False)


def test_a_leftover_container_of_the_same_try_does_not_block_a_cold_start(docker_client, channels, test_id):
    """A crashed worker's container holding the try's name is removed, and the try starts."""
    name = f"adr-itest-{test_id}"
    leftover = docker_client.containers.create(IMAGE, command=["sleep", "60"], name=name, labels={"test_id": test_id},
                                               network_mode="none", user="50000:50000", cap_drop=["ALL"],
                                               security_opt=["no-new-privileges"], read_only=True, mem_limit="64m", pids_limit=16)
    process, timings, _ = start(spec(test_id, warm_pool_size=0), name, channels)
    try:
        assert timings.pool == "off"
        assert process.id != leftover.id
        assert docker_client.api.inspect_container(name)["Id"] == process.id
    finally:
        finish(process)
