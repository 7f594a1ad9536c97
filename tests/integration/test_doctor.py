"""`airflow docker-runtime doctor` against the real daemon: a healthy set-up, and each kind of failure."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.support.images import no_airflow_image, other_sdk_minor, sdk_minor_image

pytestmark = pytest.mark.docker

COORDINATOR = "airflow_docker_runtime.coordinator.DockerCoordinator"
DAG = "from airflow.sdk import DAG\nwith DAG('d', schedule=None):\n    pass\n"


def doctor(tmp_path: Path, files: dict[str, str], *args: str) -> tuple[int, dict]:
    folder = tmp_path / "dags"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    env = {
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__SDK__COORDINATORS": json.dumps({"docker": {"classpath": COORDINATOR}}),
        "AIRFLOW__SDK__QUEUE_TO_COORDINATOR": json.dumps({"default": "docker"}),
        "AIRFLOW__DOCKER_RUNTIME__TASK_EXECUTION_RUNTIME": "docker",
        "AIRFLOW__DOCKER_RUNTIME__SCHEDULER_DAG_PARSING_RUNTIME": "docker",
        "AIRFLOW__DOCKER_RUNTIME__CONTAINER_REPOSITORY": "adr-test/base",
    }
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "docker-runtime", "doctor", "--dag-folder", str(folder), "-o", "json", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )
    return result.returncode, json.loads(result.stdout)


def by_subject(report: dict, check: str) -> dict[str, dict]:
    return {c["subject"]: c for c in report["checks"] if c["check"] == check}


def test_a_healthy_set_up_exits_0(tmp_path):
    code, report = doctor(tmp_path, {"etl.py": DAG, "etl.py.metadata.yaml": "docker_runtime:\n  image: adr-test/dep-v1:latest\n"})
    assert code == 0 and report["healthy"], report
    daemon = by_subject(report, "daemon")["unix:///var/run/docker.sock"]
    assert daemon["status"] == "ok" and "API " in daemon["detail"] and "cgroup v" in daemon["detail"] and "free in" in daemon["detail"]
    images = by_subject(report, "image")
    assert set(images) == {"adr-test/base:latest", "adr-test/dep-v1:latest"}  # container_repository:tag, and the sidecar's
    assert all(f"apache-airflow-task-sdk {version('apache-airflow-task-sdk')}" in i["detail"] for i in images.values())
    assert by_subject(report, "sidecar")["etl.py.metadata.yaml"]["status"] == "ok"
    assert by_subject(report, "routing")["[sdk] queue_to_coordinator"]["detail"] == "queues in containers: default"
    assert "airflow docker-runtime dag-processor" in by_subject(report, "dag processor")["command"]["detail"]


def test_an_image_without_airflow_fails_naming_it(tmp_path, docker_client):
    image = no_airflow_image(docker_client)
    code, report = doctor(tmp_path, {"a.py": DAG, "a.py.metadata.yaml": f"docker_runtime:\n  image: {image}\n"})
    assert code == 1 and not report["healthy"]
    check = by_subject(report, "image")[image]
    assert check["status"] == "failure" and check["detail"].startswith("no Airflow in the image"), check
    assert "a.py.metadata.yaml" in check["detail"]


def test_an_image_of_another_task_sdk_minor_version_fails_naming_both_versions(tmp_path, docker_client):
    image = sdk_minor_image(docker_client)
    code, report = doctor(tmp_path, {"a.py": DAG, "a.py.metadata.yaml": f"docker_runtime:\n  image: {image}\n"})
    assert code == 1
    check = by_subject(report, "image")[image]
    assert check["status"] == "failure"
    assert f"image has apache-airflow-task-sdk {other_sdk_minor()}, this worker {version('apache-airflow-task-sdk')}" in check["detail"]


def test_a_bad_sidecar_fails_naming_file_and_key(tmp_path):
    code, report = doctor(tmp_path, {"a.py": DAG, "a.py.metadata.yaml": "docker_runtime:\n  memroy: 1g\n"})
    assert code == 1
    check = by_subject(report, "sidecar")["a.py.metadata.yaml"]
    assert check["status"] == "failure"
    assert check["detail"].startswith(f"{tmp_path / 'dags' / 'a.py.metadata.yaml'}: key 'docker_runtime.memroy': unknown key")


def test_a_missing_image_with_pull_policy_never_fails(tmp_path):
    code, report = doctor(tmp_path, {"a.py": DAG, "a.py.metadata.yaml": "docker_runtime:\n  image: adr-test/absent:1\n  pull_policy: never\n"})
    assert code == 1
    assert "pull_policy is 'never'" in by_subject(report, "image")["adr-test/absent:1"]["detail"]
