"""The Docker daemon failing under a real Airflow deployment (LocalExecutor) whose tasks run on the private
daemon: the try's state and log, recovery without restarting anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import postgres_answers, require
from tests.support.stack import COORDINATOR, AirflowStack, pg_database, wait_for

pytestmark = pytest.mark.docker

DAGS = Path(__file__).parent / "dags"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, private_daemon):
    require(postgres_answers(), "PostgreSQL does not answer on 127.0.0.1:5432 (run scripts/ensure-postgres.sh)")
    private_daemon.start()
    tmp = tmp_path_factory.mktemp("faults")
    config = {
        "sdk": {"coordinators": json.dumps({"docker": {"classpath": COORDINATOR}}),
                "queue_to_coordinator": json.dumps({"default": "docker"})},
        "docker_runtime": {"task_execution_runtime": "docker", "container_repository": "adr-test/base",
                           "socket_path": private_daemon.url, "daemon_timeout": "3", "daemon_reattach_window": "20",
                           "stop_timeout": "2"},
        "task_execution_docker_runtime": {"warm_pool_size": "0"},
    }
    with AirflowStack(tmp / "home", DAGS, db_url=pg_database("airflow_faults"), config=config) as s:
        s.wait_for_dags(["daemon_down_before"])
        yield s


def ti_of(stack, dag_id: str, run_id: str) -> dict:
    return next(iter(stack.task_instances(dag_id, run_id).values()))


def test_daemon_down_before_a_try_fails_it_retryably_and_the_retry_works_once_it_is_back(stack, private_daemon):
    private_daemon.stop()
    try:
        run_id = stack.trigger("daemon_down_before")
        wait_for(lambda: ti_of(stack, "daemon_down_before", run_id)["state"] == "up_for_retry", timeout=120, interval=1,
                 what="the try to fail while the daemon is down")
        assert "does not answer" in stack.task_log("daemon_down_before", run_id, "quick", 1)
    finally:
        private_daemon.start()  # no Airflow component is restarted
    assert stack.wait_for_run("daemon_down_before", run_id, timeout=120) == "success"
    assert ti_of(stack, "daemon_down_before", run_id)["try_number"] == 2
    assert "quick task ran" in stack.task_log("daemon_down_before", run_id, "quick", 2)

