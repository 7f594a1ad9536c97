"""The warm pool on CeleryExecutor workers (Redis, PostgreSQL): a try served from the pool, and a warm
shutdown of the worker stops its pool."""

from __future__ import annotations

import signal
import subprocess

import pytest

from tests.e2e.conftest import dags_folder, postgres_answers, require
from tests.e2e.test_warm_pool import IMAGE, POOL_DAGS, add_variable_and_connection, idle_pooled, wait_for_ready
from tests.support.stack import AirflowStack, celery_settings, coordinator_entry, pg_database, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

REDIS_DB = 7
POOLED = "airflow-docker-runtime.pooled=true"


@pytest.fixture(scope="module")
def celery_pool_stack(tmp_path_factory, docker_client):
    require(postgres_answers(), "PostgreSQL does not answer on 127.0.0.1:5432 (run scripts/ensure-postgres.sh)")
    ping = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-n", str(REDIS_DB), "ping"], capture_output=True, text=True)
    require(ping.stdout.strip() == "PONG", "Redis does not answer on 127.0.0.1:6379 (run scripts/ensure-redis.sh)")
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-n", str(REDIS_DB), "flushdb"], check=True, capture_output=True)
    docker_client.images.get("adr-test/base:latest").tag(IMAGE)
    tmp = tmp_path_factory.mktemp("celery-pool")
    dags = dags_folder(tmp, POOL_DAGS)
    config = celery_settings(REDIS_DB, "airflow_celery_pool")
    config["docker_runtime"] = {"task_execution_runtime": "docker", "container_repository": "adr-test/base"}
    with AirflowStack(tmp / "home", dags, db_url=pg_database("airflow_celery_pool"), config=config) as stack:
        add_variable_and_connection(stack)
        stack.wait_for_dags(["pooled_features"])
        yield stack
    docker_client.images.remove(IMAGE, noprune=True)


def test_celery_try_from_the_pool_and_warm_shutdown_stops_the_pool(celery_pool_stack, docker_client):
    stack = celery_pool_stack
    worker = stack.start_worker("pooled", "default", coordinator_entry("default"))
    first = stack.trigger("pooled_features")
    assert stack.wait_for_run("pooled_features", first, timeout=240) == "success"
    wait_for_ready(docker_client, stack)

    run_id = stack.trigger("pooled_features")
    assert stack.wait_for_run("pooled_features", run_id, timeout=240) == "success"
    log = stack.task_log("pooled_features", run_id, "report")
    assert "'pool': 'hit'" in log, log
    assert "stdout line from a pooled container" in log
    assert stack.xcom("pooled_features", run_id, "check") == "value-from-airflow|db.example.com|none"
    assert "task_id='report'" in stack.worker_log("pooled")

    worker.send_signal(signal.SIGTERM)  # Celery's warm shutdown: its pool processes exit, so does the pool
    worker.wait(timeout=120)
    wait_for(lambda: not idle_pooled(docker_client), timeout=10, interval=0.1, what="the pool to stop its containers")
    wait_for(lambda: not docker_client.api.containers(all=True, filters={"label": POOLED}), timeout=30,
             what="pooled containers to be removed")
