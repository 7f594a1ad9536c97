"""A spec resolved from a sidecar, realised by a real Docker daemon: what ``docker inspect`` shows, and clean failures."""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from airflow_docker_runtime.container import launcher, rundir
from airflow_docker_runtime.container.docker_args import MANAGED_LABEL, LaunchRequest, create_kwargs
from airflow_docker_runtime.errors import ContainerStartupError, ImageNotFound
from airflow_docker_runtime.layers import sidecar_path
from airflow_docker_runtime.resolve import resolve
from airflow_docker_runtime.spec import RuntimeSpec

pytestmark = pytest.mark.docker

IMAGE = "adr-test/base:latest"
MIB = 1024**2
TEST_LABEL = "airflow-docker-runtime.test_id"


@pytest.fixture(scope="module")
def test_image(docker_client: docker.DockerClient) -> str:
    try:
        docker_client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        message = f"image {IMAGE} is not on the Docker daemon: run scripts/build-images.sh"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {message}")
        pytest.skip(message)
    return IMAGE


@pytest.fixture
def child_ends() -> Iterator[tuple[socket.socket, ...]]:
    pairs = [socket.socketpair() for _ in range(4)]
    yield tuple(child for child, _ in pairs)
    for pair in pairs:
        for sock in pair:
            sock.close()


def spec_from_sidecar(tmp_path: Path, sidecar: str, config: dict | None = None) -> RuntimeSpec:
    dag = tmp_path / "dags" / "x.py"
    dag.parent.mkdir(parents=True)
    dag.write_text("# a DAG file\n")
    sidecar_path(dag).write_text(sidecar)
    spec = resolve(dag, purpose="task", task_id="t1", read_config=(config or {}).get, image_hook=None).spec
    return spec.model_copy(update={"warm_pool_size": 0})  # cold starts: the pool has tests of its own


def containers_of(client: docker.DockerClient, test_id: str) -> list:
    return client.containers.list(all=True, filters={"label": [f"{MANAGED_LABEL}=true", f"{TEST_LABEL}={test_id}"]})


def test_container_matches_the_spec(tmp_path, docker_client, test_image, test_id):
    data = tmp_path / "data"
    data.mkdir()
    (data / "input.txt").write_text("42\n")
    spec = spec_from_sidecar(
        tmp_path,
        f"""\
docker_runtime:
  image: {test_image}
  memory: 256m
  cpus: 0.5
  pids_limit: 64
  network_mode: none
  run_as_user: "50000"
  labels: {{team: data, purpose: integration, adr-test.loosened: bind mount}}
  environments: {{GREETING: hello, RETRIES: 3}}
  volumes: ["{data}:/data:ro"]
""",
        {"docker_runtime_policy": {"allowed_host_paths": str(data), "allowed_users": "50000",
                                   "allowed_label_prefixes": "team,purpose,adr-test."}},
    )
    run_dir, bootstrap_dir = tmp_path / "run", launcher.BOOTSTRAP_DIR
    run_dir.mkdir()
    request = LaunchRequest(kind="task", name=f"adr-itest-{test_id}", run_dir=run_dir, bootstrap_dir=bootstrap_dir,
                            labels={"test_id": test_id})
    kwargs = create_kwargs(spec, request, host_env={})
    kwargs["command"] = ["sleep", "30"]  # the real command needs a supervisor; the settings are what we check

    container = docker_client.containers.create(**kwargs)
    try:
        attrs = container.attrs
        config, host = attrs["Config"], attrs["HostConfig"]
        assert config["Image"] == IMAGE
        assert config["User"] == "50000"
        assert host["Memory"] == 256 * MIB
        assert host["MemorySwap"] == 256 * MIB
        assert host["NanoCpus"] == 500_000_000
        assert host["PidsLimit"] == 64
        assert host["Init"] is True
        assert host["NetworkMode"] == "none"
        assert host["Privileged"] is False
        assert config["Labels"] == {**config["Labels"], "team": "data", "purpose": "integration", MANAGED_LABEL: "true",
                                    "airflow-docker-runtime.kind": "task", TEST_LABEL: test_id}
        assert {"GREETING=hello", "RETRIES=3"} <= set(config["Env"])
        mounts = {m["Destination"]: m for m in attrs["Mounts"]}
        assert (mounts["/data"]["Source"], mounts["/data"]["RW"]) == (str(data), False)
        assert (mounts["/run/airflow-docker-runtime"]["Source"], mounts["/run/airflow-docker-runtime"]["RW"]) == (str(run_dir), False)
        assert (mounts["/opt/airflow-docker-runtime"]["Source"], mounts["/opt/airflow-docker-runtime"]["RW"]) == (str(bootstrap_dir), False)
        assert "/var/run/docker.sock" not in mounts

        # Docker enforces what inspect says.
        container.start()
        assert container.exec_run(["id", "-u"]).output.decode().strip() == "50000"
        assert container.exec_run(["cat", "/data/input.txt"]).output.decode() == "42\n"
        write = container.exec_run(["touch", "/data/new"])
        assert write.exit_code != 0 and b"Read-only file system" in write.output
        assert container.exec_run(["ls", "/sys/class/net"]).output.decode().split() == ["lo"]
        assert not (data / "new").exists()
        container.stop(timeout=1)
    finally:
        container.remove(force=True)
    assert containers_of(docker_client, test_id) == []


@pytest.mark.parametrize("pull_policy", ["never", "missing"])
def test_launch_with_a_missing_image_leaves_nothing_behind(tmp_path, short_dir, docker_client, monkeypatch, child_ends, test_id,
                                                           pull_policy):
    image = f"adr-test/not-built-{test_id}:1"
    spec = spec_from_sidecar(tmp_path, f"docker_runtime:\n  image: {image}\n  pull_policy: {pull_policy}\n")
    run_base = short_dir / "runs"
    monkeypatch.setattr(rundir, "RUN_DIR_BASE", run_base)  # private: e2e tests may launch into the shared one
    name = f"adr-itest-{test_id}"

    started = time.monotonic()
    with pytest.raises(ImageNotFound, match=re.escape(repr(image))) as info:
        launcher.launch(spec, {"kind": "task", "name": name, "labels": {"test_id": test_id}}, child_ends, host_env={})
    elapsed = time.monotonic() - started

    assert elapsed < 60, f"a missing image took {elapsed:.0f}s to fail (pull_policy={pull_policy})"
    if pull_policy == "missing":
        assert "pulling it failed" in str(info.value)
    else:
        assert "pull_policy is 'never'" in str(info.value)
    assert containers_of(docker_client, test_id) == []
    assert docker_client.containers.list(all=True, filters={"name": name}) == []
    assert not run_base.exists() or list(run_base.iterdir()) == []


def test_container_that_never_connects_is_removed_with_its_run_dir(tmp_path, short_dir, docker_client, test_image, monkeypatch,
                                                                   child_ends, test_id):
    # python: /bin/false makes the container exit at once, before its bootstrap can connect back.
    spec = spec_from_sidecar(tmp_path, f"docker_runtime:\n  image: {test_image}\n  pull_policy: never\n  python: /bin/false\n",
                             {"docker_runtime_policy": {"allowed_pythons": "/bin/false"}})
    run_base = short_dir / "runs"
    monkeypatch.setattr(rundir, "RUN_DIR_BASE", run_base)

    with pytest.raises(ContainerStartupError, match="exited with code 1 before connecting"):
        launcher.launch(spec, {"kind": "task", "name": f"adr-itest-{test_id}", "labels": {"test_id": test_id}}, child_ends,
                        host_env={})

    assert containers_of(docker_client, test_id) == []
    assert list(run_base.iterdir()) == []  # the run directory existed (the container mounted it) and is gone
