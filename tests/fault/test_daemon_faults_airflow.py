"""The Docker daemon failing around and during tries of a real Airflow deployment (LocalExecutor), whose
tasks run on the private daemon: the try's state and log, recovery without restarting anything."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
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
        s.wait_for_dags(["daemon_down_before", "daemon_down_during", "daemon_restarted_during"])
        yield s


def ti_of(stack, dag_id: str, run_id: str) -> dict:
    return next(iter(stack.task_instances(dag_id, run_id).values()))


def log_says(stack, dag_id: str, run_id: str, task_id: str, text: str) -> bool:
    """Whether try 1's log contains ``text`` (no log yet before the try starts: not yet)."""
    try:
        return text in stack.task_log(dag_id, run_id, task_id, 1)
    except httpx.HTTPStatusError:
        return False


def left_on(private_daemon, dag_id: str) -> list:
    return private_daemon.client().api.containers(all=True, filters={"label": f"airflow-docker-runtime.dag_id={dag_id}"})


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


def test_daemon_stopped_during_a_try_ends_it_retryably_with_the_reason(stack, private_daemon):
    private_daemon.start()
    run_id = stack.trigger("daemon_down_during")
    wait_for(lambda: log_says(stack, "daemon_down_during", run_id, "slow", "slow task started"), timeout=120, interval=1,
             what="the slow task to start")
    stopping = threading.Thread(target=private_daemon.stop)
    stopped_at = time.monotonic()
    stopping.start()
    wait_for(lambda: ti_of(stack, "daemon_down_during", run_id)["state"] == "up_for_retry", timeout=60, interval=0.5,
             what="the try to end after the daemon stopped")
    ended_after = time.monotonic() - stopped_at
    stopping.join()
    log = stack.task_log("daemon_down_during", run_id, "slow", 1)
    assert "went away while the container ran" in log, log[-2000:]
    assert ended_after < 30, f"the try ended {ended_after:.0f}s after the daemon began to stop"

    private_daemon.start()
    wait_for(lambda: left_on(private_daemon, "daemon_down_during") == [], timeout=30, interval=1,
             what="the stopped container to be removed once the daemon is back")


def test_with_live_restore_a_try_runs_through_a_daemon_restart(stack, private_daemon):
    private_daemon.start(live_restore=True)
    try:
        run_id = stack.trigger("daemon_restarted_during")
        wait_for(lambda: log_says(stack, "daemon_restarted_during", run_id, "survives", "survivor started"),
                 timeout=120, interval=1, what="the task to start")
        private_daemon.stop()
        private_daemon.start(live_restore=True)
        assert stack.wait_for_run("daemon_restarted_during", run_id, timeout=120) == "success"
        log = stack.task_log("daemon_restarted_during", run_id, "survives", 1)
        assert "survivor done" in log and "Container exited" in log and "went away" not in log
        assert ti_of(stack, "daemon_restarted_during", run_id)["try_number"] == 1
    finally:
        private_daemon.start()
