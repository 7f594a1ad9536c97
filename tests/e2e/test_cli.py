"""The `airflow docker-runtime` commands, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stack import REPO

EXAMPLES = REPO / "examples" / "dags"


def airflow(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {"AIRFLOW_HOME": str(tmp_path / "home"), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", **(env or {})}
    return subprocess.run([sys.executable, "-m", "airflow", *args], capture_output=True, text=True, env=base, timeout=300)


def test_provider_is_registered_with_its_configuration(tmp_path):
    providers = airflow(tmp_path, "providers", "list")
    assert "airflow-docker-runtime" in providers.stdout
    config = airflow(tmp_path, "config", "list", "--section", "docker_runtime", "--defaults", "--include-descriptions", "--show-values")
    assert "# socket_path = unix:///var/run/docker.sock" in config.stdout
    assert "task_execution_runtime" in config.stdout and "scheduler_dag_parsing_runtime" in config.stdout


def test_spec_shows_values_and_their_sources(tmp_path):
    result = airflow(
        tmp_path, "docker-runtime", "spec", "--dag-file", str(EXAMPLES / "isolation_v1.py"), "-o", "json",
        env={"AIRFLOW__DOCKER_RUNTIME__CPUS": "2"},
    )
    assert result.returncode == 0, result.stderr
    rows = {row["key"]: row for row in json.loads(result.stdout)}
    assert rows["image"]["value"] == "adr-test/dep-v1:latest" and "isolation_v1.py.metadata.yaml" in rows["image"]["source"]
    assert rows["cpus"] == {"key": "cpus", "value": 2.0, "source": "[docker_runtime]"}
    assert rows["memory"]["value"] == "512m"


def test_spec_bad_input_exits_1_with_only_the_message(tmp_path):
    dag = tmp_path / "bad.py"
    dag.write_text("# airflow dag\n")
    (tmp_path / "bad.py.metadata.yaml").write_text("docker_runtime:\n  memory: lots\n")
    result = airflow(tmp_path, "docker-runtime", "spec", "--dag-file", str(dag))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == f"{tmp_path}/bad.py.metadata.yaml: key 'docker_runtime.memory': expected a size like 512m or 2g, got 'lots'"


@pytest.mark.docker
def test_test_command_runs_one_task_in_its_container(tmp_path, docker_client):
    env = {"AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLES), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    assert airflow(tmp_path, "db", "migrate", env=env).returncode == 0
    assert airflow(tmp_path, "dags", "reserialize", env=env).returncode == 0
    result = airflow(tmp_path, "docker-runtime", "test", "isolation_v2", "check_version", env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "adr_testdep 2.0.0 inside the container" in result.stdout
    assert "Started container" in result.stdout and "finished: success" in result.stdout
