"""Tasks that must fail cleanly: execution_timeout, an OOM kill, a missing image, a forbidden sidecar
request, an unreachable daemon. Each has its own DAG so each run's outcome is its own."""

from __future__ import annotations

import time

import pendulum

from airflow.sdk import dag, task

START = pendulum.datetime(2026, 1, 1, tz="UTC")


@dag(schedule=None, start_date=START, catchup=False)
def fail_timeout():
    @task(execution_timeout=pendulum.duration(seconds=3))
    def too_slow() -> None:
        time.sleep(120)

    too_slow()


@dag(schedule=None, start_date=START, catchup=False)
def fail_no_daemon():
    @task(queue="no-daemon")
    def never_starts() -> None:
        raise AssertionError("must not run")

    never_starts()


fail_timeout()
fail_no_daemon()
