"""``airflow docker-runtime spec --create-args`` prints what a launch really sends to Docker."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from airflow_docker_runtime.cli.commands import create_args
from airflow_docker_runtime.layers import sidecar_path
from airflow_docker_runtime.resolve import resolve
from tests.support.docker_proxy import DockerProxy

pytestmark = pytest.mark.docker

SIDECAR = "docker_runtime:\n  image: adr-test/base:latest\n  memory: 512m\n  pids_limit: 128\n  cpus: 0.5\n"


def test_the_printed_create_request_is_the_one_a_launch_sends(tmp_path, monkeypatch):
    from airflow_docker_runtime.parsing.command import parse_file

    dag = tmp_path / "dags" / "printed.py"
    dag.parent.mkdir()
    dag.write_text("from airflow.sdk import DAG\nwith DAG('printed', schedule=None):\n    pass\n")
    sidecar_path(dag).write_text(SIDECAR)
    directory = Path(tempfile.mkdtemp(prefix="adr-proxy-"))
    with DockerProxy(directory / "docker.sock") as proxy:
        for name in [n for n in os.environ if n.startswith("AIRFLOW__")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("AIRFLOW__DOCKER_RUNTIME__SOCKET_PATH", proxy.url)
        monkeypatch.setenv("AIRFLOW__DOCKER_RUNTIME__CONTAINER_REPOSITORY", "adr-test/base")
        monkeypatch.setenv("AIRFLOW__SCHEDULER_DAG_PARSING_DOCKER_RUNTIME__FORK_SERVER", "False")
        printed = create_args(resolve(dag, purpose="parse"), "parse", str(dag))["body"]
        result, _, log = parse_file(dag, timeout=120)
        assert result is not None and not result.import_errors, log
        (sent,) = [c.json() for c in proxy.creates() if c.json()["Labels"].get("airflow-docker-runtime.dag_file") == str(dag)]
    directory.rmdir()

    for key in ("Image", "Cmd", "WorkingDir", "StopSignal"):
        assert sent[key] == printed[key], key
    # The image's Config.User is empty (root): the launch chose the same fixed uid the dry run prints.
    assert sent["User"] == printed["User"] == "50000:50000"
    placeholders = {"Mounts"}
    host_sent = {k: v for k, v in sent["HostConfig"].items() if k not in placeholders}
    host_printed = {k: v for k, v in printed["HostConfig"].items() if k not in placeholders}
    assert host_sent == host_printed
    targets = lambda body: [(m["Target"], m["Type"], m["ReadOnly"]) for m in body["HostConfig"]["Mounts"]]  # noqa: E731
    assert targets(sent) == targets(printed)
    assert {k: v for k, v in sent["Labels"].items() if not k.startswith("airflow-docker-runtime.")} == \
        {k: v for k, v in printed["Labels"].items() if not k.startswith("airflow-docker-runtime.")}
