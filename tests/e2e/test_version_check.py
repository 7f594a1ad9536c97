"""An image of another Task SDK minor version, on real Airflow 3.3: the try fails at once with the versions
in its task log, and a file whose sidecar names the image gets them as its import error.

The image (``adr-test/sdk-minor``, tests/support/images.py) is adr-test/base with only the recorded
version of apache-airflow-task-sdk (its dist-info METADATA) raised by one minor: no other real release can
be downloaded here, and the version check reads exactly that. Without the check the try would succeed."""

from __future__ import annotations

import time
from importlib.metadata import version

import pytest

from tests.e2e.conftest import PG_URL, docker_config, postgres_answers, require
from tests.support.images import other_sdk_minor, sdk_minor_image
from tests.support.stack import AirflowStack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

SDK = version("apache-airflow-task-sdk")
LINE = (
    f"airflow-docker-runtime: image has apache-airflow-task-sdk {other_sdk_minor()}, this worker {SDK}: "
    f"the image must have the worker's minor version ({'.'.join(SDK.split('.')[:2])})"
)
DAG = '''
import pendulum
from airflow.sdk import dag, task


@dag(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, default_args={{"retries": 0}})
def build():
    @task
    def mismatched() -> None:
        print("task code ran")

    mismatched()


build()
'''


@pytest.fixture(scope="module")
def version_stack(tmp_path_factory, docker_client):
    require(postgres_answers(), "PostgreSQL does not answer on 127.0.0.1:5432 (run scripts/ensure-postgres.sh)")
    image = sdk_minor_image(docker_client)
    tmp = tmp_path_factory.mktemp("version-check")
    dags = tmp / "dags"
    dags.mkdir()
    # Parsed in adr-test/base; its one task runs in the mismatched image (a per-task override).
    (dags / "vc_task.py").write_text(DAG.format(dag_id="vc_task"))
    (dags / "vc_task.py.metadata.yaml").write_text(f"tasks:\n  mismatched:\n    docker_runtime:\n      image: {image}\n")
    # Parsed in the mismatched image: the fork server (or the container of a strict parse) refuses to start.
    (dags / "vc_parse.py").write_text(DAG.format(dag_id="vc_parse"))
    (dags / "vc_parse.py.metadata.yaml").write_text(f"docker_runtime:\n  image: {image}\n")
    config = docker_config(scheduler_dag_parsing_runtime="docker")
    with AirflowStack(tmp / "home", dags, db_url=PG_URL, config=config, dag_processor=("docker-runtime", "dag-processor")) as stack:
        yield stack


def test_a_try_in_an_image_of_another_minor_version_fails_at_once_with_both_versions(version_stack):
    version_stack.wait_for_dags(["vc_task"])
    started = time.monotonic()
    run_id = version_stack.trigger("vc_task")
    assert version_stack.wait_for_run("vc_task", run_id, timeout=240) == "failed"
    assert time.monotonic() - started < 90
    log = version_stack.task_log("vc_task", run_id, "mismatched")
    assert LINE in log, log
    assert "adr-test/sdk-minor:latest" in log and "Airflow minor version" in log
    assert "task code ran" not in log


def test_a_file_parsed_in_an_image_of_another_minor_version_gets_the_versions_as_its_import_error(version_stack):
    errors = wait_for(
        lambda: {e["filename"]: e["stack_trace"] for e in version_stack.import_errors() if e["filename"].endswith("vc_parse.py")},
        timeout=180, what="the import error of vc_parse.py",
    )
    (error,) = errors.values()
    assert "adr-test/sdk-minor:latest" in error, error
    if LINE not in error:  # a container per parse: the line is in the processor's log, the error names the worker's side
        assert f"Airflow minor version (task-sdk={SDK};" in error, error
        logs = [f for f in (version_stack.home / "logs").rglob("*") if f.is_file() and "vc_parse" in f.name]
        assert any(LINE in f.read_text(errors="replace") for f in logs), logs
    assert "vc_parse" not in version_stack.dag_ids()
