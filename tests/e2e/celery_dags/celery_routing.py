"""Tasks for the CeleryExecutor tests: each queue is served by a different worker whose coordinator
entry is configured differently. Every task reports what its container looks like from the inside."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pendulum

from airflow.sdk import BaseOperator, dag, task

START = pendulum.datetime(2026, 1, 1, tz="UTC")


def observe() -> dict:
    """The container's limits and network as its process sees them, and the sidecar's setting."""
    limit = None
    for path in ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"):
        if Path(path).exists():
            limit = Path(path).read_text().strip()
            break
    return {
        "memory_limit": limit,
        "interfaces": sorted(os.listdir("/sys/class/net")),
        "hostname": socket.gethostname(),
        "sidecar_setting": os.environ.get("SIDECAR_SETTING"),
        "adr_testdep": __import__("adr_testdep").__version__,
    }


@dag(schedule=None, start_date=START, catchup=False)
def celery_routing():
    @task(queue="small")
    def on_small() -> dict:
        return observe()

    @task(queue="isolated")
    def on_isolated() -> dict:
        return observe()

    on_small()
    on_isolated()


class SleepOperator(BaseOperator):
    """Sleeps ``params.seconds``; its ``on_kill`` says where it ran (Airflow calls it on SIGTERM)."""

    def execute(self, context) -> str:
        print("sleeping", context["params"]["seconds"], flush=True)
        time.sleep(context["params"]["seconds"])
        return "slept"

    def on_kill(self) -> None:
        print(f"on_kill ran in {socket.gethostname()}", flush=True)


@dag(schedule=None, start_date=START, catchup=False, params={"seconds": 8})
def celery_sleep():
    SleepOperator(task_id="sleep", queue="lifecycle", retries=1, retry_delay=pendulum.duration(hours=1))


@dag(schedule=None, start_date=START, catchup=False, params={"per_queue": 100})
def celery_load():
    """The load test's DAG (bench/celery_load.py): ``per_queue`` short tasks on each worker's queue."""

    @task(queue="small")
    def items(params=None) -> list[int]:
        return list(range(params["per_queue"]))

    @task(queue="small")
    def quick_small(i: int) -> int:
        return i

    @task(queue="isolated")
    def quick_isolated(i: int) -> int:
        return i

    numbers = items()
    quick_small.expand(i=numbers)
    quick_isolated.expand(i=numbers)


celery_routing()
celery_sleep()
celery_load()
