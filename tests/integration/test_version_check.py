"""The version check at start on a real daemon: an image of another Task SDK minor version is refused with
one clear line, by a fork server (before it says ready) and by a cold-started parse."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from airflow_docker_runtime.container import forkserver, rundir
from airflow_docker_runtime.errors import ContainerStartupError
from airflow_docker_runtime.spec import DEFAULTS, RuntimeSpec
from tests.support.images import other_sdk_minor, sdk_minor_image

pytestmark = pytest.mark.docker

SDK = version("apache-airflow-task-sdk")
LINE = (
    f"image has apache-airflow-task-sdk {other_sdk_minor()}, this worker {SDK}: "
    f"the image must have the worker's minor version ({'.'.join(SDK.split('.')[:2])})"
)


@pytest.fixture(scope="module")
def sdk_minor(docker_client) -> str:
    return sdk_minor_image(docker_client)


def test_a_fork_server_of_another_minor_version_fails_with_the_versions(sdk_minor, docker_client, test_id, short_dir, monkeypatch):
    monkeypatch.setattr(rundir, "RUN_DIR_BASE", short_dir / "runs")
    base = {k: v for k, v in DEFAULTS.items() if k not in ("container_repository", "container_tag")}
    spec = RuntimeSpec(**{**base, "image": sdk_minor, "pull_policy": "never", "fork_server": True})
    request = {"kind": "parse", "name": f"adr-itest-{test_id}", "labels": {"test_id": test_id}, "bundle_paths": (), "environment": {}}
    with pytest.raises(ContainerStartupError) as info:
        forkserver.server_for(spec, request)
    assert f"airflow-docker-runtime: {LINE}" in str(info.value)
    assert docker_client.containers.list(all=True, filters={"label": f"airflow-docker-runtime.test_id={test_id}"}) == []


@pytest.mark.parametrize("fork_server", ["True", "False"])
def test_a_parse_in_an_image_of_another_minor_version_is_an_import_error_naming_the_image(sdk_minor, tmp_path, fork_server):
    dag = tmp_path / "mismatch.py"
    dag.write_text("from airflow.sdk import DAG\nwith DAG('mismatch', schedule=None):\n    pass\n")
    (tmp_path / "mismatch.py.metadata.yaml").write_text(f"docker_runtime:\n  image: {sdk_minor}\n  pull_policy: never\n")
    env = {"AIRFLOW_HOME": str(tmp_path / "home"), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
           "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__SCHEDULER_DAG_PARSING_DOCKER_RUNTIME__FORK_SERVER": fork_server}
    result = subprocess.run([sys.executable, "-m", "airflow", "docker-runtime", "parse", str(dag)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    error = result.stdout.partition("import error in mismatch.py:")[2]
    assert sdk_minor in error, result.stdout
    if fork_server == "True":  # the server's output is the import error
        assert f"airflow-docker-runtime: {LINE}" in error
    else:  # a cold start: the line is in the parse's log; the import error names the image and the worker's versions
        assert f"airflow-docker-runtime: {LINE}" in result.stderr
        assert f"Docker runtime: image '{sdk_minor}'" in error and "Airflow minor version" in error


@pytest.fixture(autouse=True)
def _no_servers_left():
    yield
    forkserver._stop_all()
