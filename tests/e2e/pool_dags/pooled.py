"""Tries served by the warm pool: Airflow features in a pooled container, and a try that holds until released."""

from __future__ import annotations

import time
from pathlib import Path

import pendulum

from airflow.sdk import Connection, Variable, dag, task

RELEASE = Path(__file__).with_name(".release")


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def pooled_features():
    @task
    def report(**context) -> dict:
        import socket

        print("stdout line from a pooled container")
        try:
            import adr_testdep

            version = adr_testdep.__version__
        except ImportError:
            version = "none"
        return {
            "variable": Variable.get("adr_var"),
            "conn_host": Connection.get("adr_conn").host,
            "hostname": socket.gethostname(),
            "testdep": version,
        }

    @task
    def check(data: dict) -> str:
        return f"{data['variable']}|{data['conn_host']}|{data['testdep']}"

    check(report())


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, max_active_tasks=4)
def pooled_hold():
    @task
    def hold(i: int) -> int:
        deadline = time.monotonic() + 300
        while not RELEASE.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        return i

    hold.expand(i=[0, 1, 2])


pooled_features()
pooled_hold()


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, max_active_tasks=4)
def forked_tries():
    @task(queue="forked")
    def where(i: int) -> dict:
        import os
        import socket

        return {"hostname": socket.gethostname(), "pid": os.getpid(), "variable": Variable.get("adr_var")}

    where.expand(i=[0, 1, 2, 3])


forked_tries()
