"""Needs adr_testdep 1.x at import time: only its container (adr-test/dep-v1) can parse it."""

from __future__ import annotations

import socket

import adr_testdep
import pendulum

from airflow.sdk import Variable, dag, task

assert adr_testdep.__version__.startswith("1."), adr_testdep.__version__


def record_callback(context) -> None:
    # A DAG-level callback: runs in the DAG processor's parse child, i.e. in this file's container.
    Variable.set("parse_v1_callback", f"{adr_testdep.__version__}@{socket.gethostname()}")


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    on_success_callback=record_callback,
)
def parse_v1():
    @task
    def version() -> str:
        return adr_testdep.__version__

    version()


parse_v1()
