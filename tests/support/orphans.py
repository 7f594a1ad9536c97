"""Orphans made to order: containers carrying this runtime's labels with an owner that is gone."""

from __future__ import annotations

import subprocess
import sys

import docker

from airflow_docker_runtime.container import owner
from airflow_docker_runtime.container.docker_args import LABEL_PREFIX, MANAGED_LABEL

IMAGE = "adr-test/base:latest"
TEST_LABEL = f"{LABEL_PREFIX}.test_id"


def dead_owner_labels(host: str | None = None) -> dict[str, str]:
    """Owner labels of a process that has exited (on ``host``, default this one)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    labels = {**owner.owner_labels(), "supervisor_pid": str(child.pid), "supervisor_started": "1"}
    if host is not None:
        labels["worker"] = host
    return labels


def managed_container(
    client: docker.DockerClient, test_id: str, name: str, labels: dict[str, str], *, running: bool = True, kind: str = "task"
):
    """A container carrying this runtime's labels (as if a supervisor had started it)."""
    container = client.containers.create(
        IMAGE,
        command=["sleep", "300"],
        name=f"adr-itest-{test_id}-{name}",
        labels={MANAGED_LABEL: "true", TEST_LABEL: test_id, f"{LABEL_PREFIX}.kind": kind, "adr-test.fixture": "orphan imitation",
                **{f"{LABEL_PREFIX}.{k}": v for k, v in labels.items()}},
    )
    if running:
        container.start()
    return container


def remove_test_containers(client: docker.DockerClient, test_id: str) -> None:
    for container in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}={test_id}"}):
        container.remove(force=True)
