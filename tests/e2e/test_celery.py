"""The docker runtime on CeleryExecutor workers: Redis broker, PostgreSQL metadata and result backend, two
workers with differently configured coordinator entries, worker warm shutdown and SIGKILL, orphan gc."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.e2e.conftest import postgres_answers, require
from tests.support.containers import task_containers
from tests.support.stack import AirflowStack, celery_settings, coordinator_entry, pg_database, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

CELERY_DAGS = os.path.join(os.path.dirname(__file__), "celery_dags")
REDIS_DB = 5
MIB = 1024**2
MANAGED = "airflow-docker-runtime.managed=true"
HEARTBEAT_TIMEOUT = 20


def redis_answers() -> bool:
    result = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-n", str(REDIS_DB), "ping"], capture_output=True, text=True)
    return result.stdout.strip() == "PONG"


def containers_of(docker_client, dag_id: str) -> list[dict]:
    return task_containers(docker_client, dag_id)


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory, docker_client):
    require(postgres_answers(), "PostgreSQL does not answer on 127.0.0.1:5432 (run scripts/ensure-postgres.sh)")
    require(redis_answers(), "Redis does not answer on 127.0.0.1:6379 (run scripts/ensure-redis.sh)")
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-n", str(REDIS_DB), "flushdb"], check=True, capture_output=True)
    tmp = tmp_path_factory.mktemp("celery")
    config = celery_settings(REDIS_DB, "airflow_celery")
    config["docker_runtime"] = {"task_execution_runtime": "docker", "container_repository": "adr-test/base"}
    config["scheduler"] = {"task_instance_heartbeat_timeout": str(HEARTBEAT_TIMEOUT)}
    stack = AirflowStack(tmp / "home", CELERY_DAGS, db_url=pg_database("airflow_celery"), config=config)
    with stack:
        # An operator who wants bridge says so; the default is no network (ADR 0008).
        stack.start_worker("small", "small", coordinator_entry("small", memory="256m", network_mode="bridge",
                                                              labels="adr-test.loosened=NetworkMode"))
        stack.start_worker("isolated", "isolated", coordinator_entry("isolated", network_mode="none"))
        stack.wait_for_dags(["celery_routing", "celery_sleep", "celery_load"])
        yield stack


def test_each_worker_runs_its_queue_with_its_own_entry_and_the_sidecar(celery_stack, docker_client):
    run_id = celery_stack.trigger("celery_routing")
    state = celery_stack.wait_for_run("celery_routing", run_id)
    assert state == "success", celery_stack.task_log("celery_routing", run_id, "on_small")

    small = celery_stack.xcom("celery_routing", run_id, "on_small")
    isolated = celery_stack.xcom("celery_routing", run_id, "on_isolated")
    # The worker serving `small` limits memory more and opens the bridge, the one serving `isolated` keeps
    # the defaults (1g, no network) and says network_mode = none explicitly.
    assert int(small["memory_limit"]) == 256 * MIB
    assert int(isolated["memory_limit"]) == 1024 * MIB
    assert "eth0" in small["interfaces"]
    assert isolated["interfaces"] == ["lo"]
    # Both see the DAG's sidecar: its image (adr_testdep 1.0.0 is not on the workers) and its environment.
    for seen in (small, isolated):
        assert (seen["adr_testdep"], seen["sidecar_setting"]) == ("1.0.0", "from-the-sidecar")
    assert small["hostname"] != isolated["hostname"]

    # Each try was executed by the worker that listens on its queue, and nowhere else.
    small_log, isolated_log = celery_stack.worker_log("small"), celery_stack.worker_log("isolated")
    assert "task_id='on_small'" in small_log and "task_id='on_isolated'" not in small_log
    assert "task_id='on_isolated'" in isolated_log and "task_id='on_small'" not in isolated_log
    task_log = celery_stack.task_log("celery_routing", run_id, "on_small")
    assert "Started container" in task_log and "adr-test/dep-v1:latest" in task_log
    assert containers_of(docker_client, "celery_routing") == []


def wait_for_running_container(docker_client, dag_id: str, timeout: float = 180) -> dict:
    return wait_for(
        lambda: next((c for c in containers_of(docker_client, dag_id) if c["State"] == "running"), None),
        timeout=timeout, interval=0.2, what=f"a running container of {dag_id}",
    )


def test_warm_shutdown_lets_the_running_container_finish(celery_stack, docker_client):
    worker = celery_stack.start_worker("lifecycle", "lifecycle", coordinator_entry("lifecycle"))
    run_id = celery_stack.trigger("celery_sleep", conf={"seconds": 8})
    wait_for_running_container(docker_client, "celery_sleep")

    worker.send_signal(signal.SIGTERM)  # Celery's warm shutdown: finish what is running, take nothing new
    worker.wait(timeout=120)

    assert celery_stack.wait_for_run("celery_sleep", run_id, timeout=60) == "success"
    assert celery_stack.xcom("celery_sleep", run_id, "sleep") == "slept"
    assert "Warm shutdown" in celery_stack.worker_log("lifecycle")
    assert containers_of(docker_client, "celery_sleep") == []


def test_sigterm_to_every_worker_process_runs_on_kill_in_the_container_and_lets_it_finish(celery_stack, docker_client):
    """systemd's default stop (SIGTERM to the whole control group), as natively: the supervisor forwards
    SIGTERM into the container, Airflow calls the operator's on_kill there, and Celery's warm shutdown
    waits for the try. (A service manager's later SIGKILL is the lifeline's case, below.)"""
    worker = celery_stack.start_worker("systemd", "lifecycle", coordinator_entry("lifecycle"))
    run_id = celery_stack.trigger("celery_sleep", conf={"seconds": 10})
    container = wait_for_running_container(docker_client, "celery_sleep")
    wait_for(lambda: "sleeping 10" in celery_stack.task_log("celery_sleep", run_id, "sleep"), timeout=60,
             what="the task to start sleeping")

    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(timeout=120)

    assert celery_stack.wait_for_run("celery_sleep", run_id, timeout=60) == "success"
    log = celery_stack.task_log("celery_sleep", run_id, "sleep")
    assert f"on_kill ran in {container['Id'][:12]}" in log, log[-2000:]  # the container's hostname is its id
    assert containers_of(docker_client, "celery_sleep") == []


def test_sigkilled_worker_leaves_no_running_container_and_a_restarted_worker_removes_the_rest(celery_stack, docker_client):
    # Cold starts: this is the orphan path of a container started for its try (a pooled one is removed by
    # its pool when the worker dies: tests/e2e/test_warm_pool.py).
    worker = celery_stack.start_worker("crash", "lifecycle", coordinator_entry("lifecycle", warm_pool_size="0"))
    run_id = celery_stack.trigger("celery_sleep", conf={"seconds": 600})
    container = wait_for_running_container(docker_client, "celery_sleep")
    # Mid-task: the try is running (its supervisor told the API server), not still being handed over.
    wait_for(lambda: "sleeping 600" in celery_stack.task_log("celery_sleep", run_id, "sleep"), timeout=60,
             what="the task to start sleeping")
    assert container["Labels"]["airflow-docker-runtime.worker"] == subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()

    os.killpg(worker.pid, signal.SIGKILL)  # the worker and every process of it, supervisors included
    killed = time.monotonic()
    wait_for(lambda: docker_client.api.inspect_container(container["Id"])["State"]["Status"] != "running",
             timeout=10, interval=0.1, what="the orphaned container to stop by itself")
    print(f"orphaned container stopped {time.monotonic() - killed:.2f}s after the worker was killed")

    # The scheduler notices the missing heartbeat and fails the try; it has a retry left.
    ti = wait_for(
        lambda: (t := celery_stack.task_instances("celery_sleep", run_id)["sleep"])["state"] == "up_for_retry" and t,
        timeout=HEARTBEAT_TIMEOUT + 120, interval=1, what="the killed worker's try to be failed (up_for_retry)",
    )
    assert ti["try_number"] == 1

    # A worker started on this host removes the stopped orphan when it is ready, before any task arrives.
    celery_stack.start_worker(
        "restarted", "lifecycle",
        {**coordinator_entry("lifecycle", warm_pool_size="0"),
         "celery": {"celery_config_options": "airflow_docker_runtime.integrations.celery.CELERY_CONFIG"}},
    )
    wait_for(lambda: containers_of(docker_client, "celery_sleep") == [], timeout=60, what="the restarted worker to remove the orphan")
    assert "removed orphaned container" in celery_stack.worker_log("restarted")
    celery_stack.api.patch(f"/dags/celery_sleep/dagRuns/{run_id}", json={"state": "failed"}).raise_for_status()
