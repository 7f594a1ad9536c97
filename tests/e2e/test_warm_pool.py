"""The warm pool on a real Airflow 3.3 (LocalExecutor, PostgreSQL) and a real Docker daemon.

Tries are served by pooled containers with logs, XCom, Connections and Variables as before; a claimed
container carries the try's name; a re-tagged image is never served by a stale container; the host bound
holds; mark-failed stops a pooled try; killing the worker leaves no pooled container.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from airflow_docker_runtime.container.docker_args import container_name
from airflow_docker_runtime.container.pool import pool_address
from tests.e2e.conftest import dags_folder, docker_config, postgres_answers, require
from tests.support.stack import COORDINATOR, AirflowStack, pg_database, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

POOL_DAGS = Path(__file__).parent / "pool_dags"
IMAGE = "adr-test/pool-img:latest"
POOLED = "airflow-docker-runtime.pooled=true"
MAX_CONTAINERS = 2
DOCKER_URL = "unix:///var/run/docker.sock"


def pool_log() -> str:
    path = pool_address(DOCKER_URL).with_suffix(".log")
    return path.read_text(errors="replace") if path.exists() else ""


def idle_pooled(docker_client) -> list[dict]:
    """Running pooled containers not yet claimed (claimed ones are renamed to the try's name)."""
    found = docker_client.api.containers(filters={"label": POOLED})
    return [c for c in found if c["Names"][0].lstrip("/").startswith("adr-pool-")]


def wait_for_ready(docker_client, stack, timeout: float = 120) -> str:
    """Name of an idle pooled container of ``stack`` (it mounts the stack's DAG folder) whose bootstrap said
    ready (the pool server logs it). The host's pool may hold other deployments' containers too."""

    def ready() -> str | None:
        log = pool_log()
        for container in idle_pooled(docker_client):
            name = container["Names"][0].lstrip("/")
            mounts = {m.get("Source") for m in container.get("Mounts") or []}
            if f"{name} ready" in log and str(stack.dags_folder) in mounts:
                return name
        return None

    return wait_for(ready, timeout=timeout, interval=0.2, what="a ready pooled container")


@pytest.fixture(scope="module")
def pool_stack(tmp_path_factory, docker_client):
    require(postgres_answers(), "PostgreSQL does not answer on 127.0.0.1:5432 (run scripts/ensure-postgres.sh)")
    docker_client.images.get("adr-test/base:latest").tag(IMAGE)
    tmp = tmp_path_factory.mktemp("pool")
    dags = dags_folder(tmp, POOL_DAGS)
    config = docker_config(warm_pool_max_containers=str(MAX_CONTAINERS))
    # Queue `forked` opts in to the task fork server.
    coordinators = json.loads(config["sdk"]["coordinators"])
    coordinators["docker-fork"] = {"classpath": COORDINATOR, "kwargs": {"fork_server": True}}
    config["sdk"]["coordinators"] = json.dumps(coordinators)
    config["sdk"]["queue_to_coordinator"] = json.dumps({**json.loads(config["sdk"]["queue_to_coordinator"]), "forked": "docker-fork"})
    config["core"] = {"parallelism": "4"}
    with AirflowStack(tmp / "home", dags, db_url=pg_database("airflow_pool"), config=config) as s:
        add_variable_and_connection(s)
        s.wait_for_dags(["pooled_features", "pooled_hold", "forked_tries"])
        yield s
    docker_client.images.remove(IMAGE, noprune=True)


def add_variable_and_connection(stack) -> None:
    """What the pool DAGs read inside their containers."""
    stack.api.post("/variables", json={"key": "adr_var", "value": "value-from-airflow"}).raise_for_status()
    stack.api.post("/connections", json={"connection_id": "adr_conn", "conn_type": "generic", "host": "db.example.com"}).raise_for_status()


def run(stack, dag_id: str) -> str:
    run_id = stack.trigger(dag_id)
    assert stack.wait_for_run(dag_id, run_id, timeout=240) == "success", stack.task_instances(dag_id, run_id)
    return run_id


def test_a_try_served_from_the_pool_works_like_any_other(pool_stack, docker_client):
    run(pool_stack, "pooled_features")  # the first tries miss and ask the pool to keep this spec warm
    wait_for_ready(docker_client, pool_stack)
    run_id = run(pool_stack, "pooled_features")
    log = pool_stack.task_log("pooled_features", run_id, "report")
    assert "'pool': 'hit'" in log and "claim_seconds" in log, log
    assert "stdout line from a pooled container" in log
    assert "Container exited" in log and "'exit_code': 0" in log
    assert pool_stack.xcom("pooled_features", run_id, "check") == "value-from-airflow|db.example.com|none"


def test_claimed_container_carries_the_try_name_bound_holds_and_mark_failed_stops_it(pool_stack, docker_client):
    release = pool_stack.dags_folder / ".release"
    release.unlink(missing_ok=True)
    most = 0
    sampling = threading.Event()

    def sample() -> None:
        nonlocal most
        while not sampling.is_set():
            most = max(most, len(idle_pooled(docker_client)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        wait_for_ready(docker_client, pool_stack)
        run_id = pool_stack.trigger("pooled_hold")
        tis = wait_for(
            lambda: (t := pool_stack.task_instances("pooled_hold", run_id)) and sum(v["state"] == "running" for v in t.values()) == 3 and t,
            timeout=180, what="three holding tries running",
        )
        names = {c["Names"][0].lstrip("/"): c for c in docker_client.api.containers(filters={"label": POOLED})}
        expected = {
            key: container_name("task", "pooled_hold", "hold", run_id, ti["map_index"], ti["try_number"], ti["id"])
            for key, ti in tis.items()
        }
        served = [key for key, name in expected.items() if name in names]
        assert served, f"no claimed pooled container carries a try's name: {sorted(names)} vs {expected}"

        victim = served[0]
        ti = tis[victim]
        pool_stack.api.patch(
            f"/dags/pooled_hold/dagRuns/{run_id}/taskInstances/hold/{ti['map_index']}", json={"new_state": "failed"}
        ).raise_for_status()
        wait_for(lambda: not docker_client.api.containers(all=True, filters={"name": expected[victim]}), timeout=60,
                 what="the marked-failed pooled container to be gone")
        release.touch()
        pool_stack.wait_for_run("pooled_hold", run_id, timeout=240)
        assert pool_stack.task_instances("pooled_hold", run_id)[victim]["state"] == "failed"
        wait_for_ready(docker_client, pool_stack)  # refilled after the tries
    finally:
        release.touch()
        sampling.set()
        sampler.join()
    assert most == MAX_CONTAINERS, f"the pool should fill up to its bound of {MAX_CONTAINERS} idle containers, saw at most {most}"


def test_a_retagged_image_is_never_served_by_a_stale_container(pool_stack, docker_client):
    wait_for_ready(docker_client, pool_stack)
    docker_client.images.get("adr-test/dep-v1:latest").tag(IMAGE)
    try:
        run_id = run(pool_stack, "pooled_features")
    finally:
        docker_client.images.get("adr-test/base:latest").tag(IMAGE)
    log = pool_stack.task_log("pooled_features", run_id, "report")
    assert "'pool': 'miss'" in log, log
    # Served by a container of the new image, never by one of the ready containers of the old one.
    assert pool_stack.xcom("pooled_features", run_id, "check") == "value-from-airflow|db.example.com|1.0.0"


def test_a_fork_server_queue_runs_its_tries_as_children_of_long_lived_containers(pool_stack, docker_client):
    def where(run_id: str) -> list[dict]:
        return [
            pool_stack.get(f"/dags/forked_tries/dagRuns/{run_id}/taskInstances/where/xcomEntries/return_value",
                           map_index=i, deserialize=True)["value"]
            for i in range(4)
        ]

    first, second = where(run(pool_stack, "forked_tries")), where(run_id := run(pool_stack, "forked_tries"))
    assert {s["variable"] for s in first + second} == {"value-from-airflow"}
    assert len({(s["hostname"], s["pid"]) for s in first + second}) == 8  # a process of its own per try
    # No container per try: 8 tries ran in at most one server per worker process (parallelism 4), each a
    # long-lived container still running now (a container's hostname is its id's first 12 characters).
    servers = {c["Id"][:12] for c in docker_client.api.containers(filters={"label": "airflow-docker-runtime.fork_server=true"})}
    hosts = {s["hostname"] for s in first + second}
    assert len(hosts) <= 4 and hosts <= servers, (hosts, servers)
    log = pool_stack.task_log("forked_tries", run_id, "where", map_index=0)
    assert "Started container" in log and "'pool': 'off'" in log and "adr-task-server-" in log, log


def test_killing_the_worker_leaves_no_pooled_container(pool_stack, docker_client):
    wait_for_ready(docker_client, pool_stack)
    scheduler = pool_stack.procs["scheduler"]
    os.killpg(scheduler.pid, signal.SIGKILL)  # the scheduler and its LocalExecutor worker processes
    killed = time.monotonic()
    wait_for(lambda: not idle_pooled(docker_client), timeout=5, interval=0.05, what="pooled containers to stop")
    stopped = time.monotonic() - killed
    assert stopped <= 1.0, f"pooled containers ran on for {stopped:.2f}s after the worker was killed"
    wait_for(lambda: not docker_client.api.containers(all=True, filters={"label": POOLED}), timeout=30,
             what="pooled containers to be removed")
