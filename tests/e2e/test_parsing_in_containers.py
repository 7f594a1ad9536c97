"""DAG files are parsed inside containers: `airflow docker-runtime dag-processor` on real Airflow 3.3."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from tests.e2e.conftest import E2E_DAGS, PG_URL, dags_folder, docker_config, postgres_answers, require
from tests.support.orphans import dead_owner_labels, managed_container, remove_test_containers
from tests.support.stack import REPO, AirflowStack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

PARSE_DAGS = E2E_DAGS.parent / "parse_dags"
MANAGED = "airflow-docker-runtime.managed=true"


@pytest.fixture(scope="module")
def parsing_stack(tmp_path_factory, docker_client):
    require(postgres_answers(), "PostgreSQL does not answer on 127.0.0.1:5432 (run scripts/ensure-postgres.sh)")
    tmp = tmp_path_factory.mktemp("parsing")
    config = docker_config(scheduler_dag_parsing_runtime="docker")
    # The strict setting: one container per parse (the default, a fork server per spec, has its own tests).
    config["scheduler_dag_parsing_docker_runtime"] = {"fork_server": "False"}
    config["dag_processor"] = {"dag_file_processor_timeout": "15"}
    # What a killed predecessor left: the processor must remove it when it starts (gc_on_start).
    test_id = uuid.uuid4().hex[:12]
    orphan = managed_container(docker_client, test_id, "parse-orphan", dead_owner_labels(), running=False, kind="parse")
    try:
        with AirflowStack(
            tmp / "home", dags_folder(tmp, PARSE_DAGS), db_url=PG_URL, config=config, dag_processor=("docker-runtime", "dag-processor")
        ) as s:
            s.orphan_name = orphan.name
            yield s
    finally:
        remove_test_containers(docker_client, test_id)


def test_a_starting_processor_removes_its_predecessors_orphans(parsing_stack, docker_client):
    wait_for(lambda: not docker_client.api.containers(all=True, filters={"name": parsing_stack.orphan_name}), timeout=60,
             what="the DAG processor to remove the orphaned parse container")
    assert f"removed orphaned container {parsing_stack.orphan_name}" in parsing_stack.component_log("dag-processor")


def errors_by_file(stack) -> dict[str, str]:
    return {e["filename"]: e["stack_trace"] for e in stack.import_errors()}


def test_each_file_is_parsed_in_its_own_image(parsing_stack):
    """parse_v1 needs adr_testdep 1 at import time, parse_v2 needs 2; the host has neither."""
    parsing_stack.wait_for_dags(["parse_v1", "parse_v2"])
    errors = errors_by_file(parsing_stack)
    assert not [f for f in errors if f.startswith("parse_v")], errors


def test_runs_succeed_in_the_same_images_and_callbacks_run_in_the_container(parsing_stack):
    parsing_stack.wait_for_dags(["parse_v1", "parse_v2"])
    runs = {dag_id: parsing_stack.trigger(dag_id) for dag_id in ("parse_v1", "parse_v2")}
    host = subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    for dag_id, run_id in runs.items():
        assert parsing_stack.wait_for_run(dag_id, run_id) == "success"
        version = parsing_stack.xcom(dag_id, run_id, "version")
        assert version == f"{dag_id[-1]}.0.0"
        key = f"{dag_id}_callback"
        value = wait_for(
            lambda: (r := parsing_stack.api.get(f"/variables/{key}")).status_code == 200 and r.json()["value"],
            timeout=120,
            what=f"the DAG-level success callback of {dag_id}",
        )
        callback_version, _, callback_host = value.partition("@")
        assert callback_version == version and callback_host != host


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("broken_sidecar.py", ["broken_sidecar.py.metadata.yaml", "docker_runtime.memroy", "unknown key"]),
        ("raises.py", ["boom from the DAG file"]),
        ("unknown_image.py", ["adr-test/unknown:9.9", "ImageNotFound"]),
    ],
)
def test_failures_stay_on_the_file_that_caused_them(parsing_stack, file, expected):
    errors = wait_for(lambda: (e := errors_by_file(parsing_stack)).get(file) and e, timeout=180, what=f"an import error on {file}")
    for text in expected:
        assert text in errors[file]
    parsing_stack.wait_for_dags(["parse_v1", "parse_v2"])  # the others keep parsing
    assert parsing_stack.procs["dag-processor"].poll() is None, "the DAG processor must not crash"


def test_processor_timeout_kills_the_container(parsing_stack, docker_client):
    def slow_containers(all_states=True) -> list[str]:
        found = docker_client.api.containers(all=all_states, filters={"label": [MANAGED, "airflow-docker-runtime.kind=parse"]})
        return [c["Id"] for c in found if c["Labels"].get("airflow-docker-runtime.dag_file", "").endswith("slow_parse.py")]

    first = wait_for(lambda: slow_containers(False), timeout=120, what="a parsing container for slow_parse.py")[0]
    wait_for(lambda: "slow_parse.py" in parsing_stack.component_log("dag-processor") and "exceeding the timeout" in parsing_stack.component_log("dag-processor"), timeout=90, what="the processor timeout")
    wait_for(lambda: first not in slow_containers(), timeout=30, what="the timed-out container to be removed")


def test_parse_cli_prints_dag_ids_and_errors(tmp_path):
    airflow = [sys.executable, "-m", "airflow"]
    env_home = {"AIRFLOW_HOME": str(tmp_path), "PATH": f"{REPO / '.venv' / 'bin'}:/usr/bin:/bin"}
    ok = subprocess.run([*airflow, "docker-runtime", "parse", str(PARSE_DAGS / "parse_v2.py")], capture_output=True, text=True, env=env_home, timeout=180)
    assert ok.returncode == 0, ok.stderr
    assert "dag ids: parse_v2" in ok.stdout and "time:" in ok.stdout
    bad = subprocess.run([*airflow, "docker-runtime", "parse", str(PARSE_DAGS / "raises.py")], capture_output=True, text=True, env=env_home, timeout=180)
    assert bad.returncode == 1 and "boom from the DAG file" in bad.stdout
