"""Needs adr_testdep 2.x at import time: only its container (adr-test/dep-v2) can parse it."""

from __future__ import annotations

import socket

import adr_testdep
import pendulum

from airflow.sdk import Variable, dag, task

assert adr_testdep.__version__.startswith("2."), adr_testdep.__version__


def record_callback(context) -> None:
    # A DAG-level callback: runs in the DAG processor's parse child, i.e. in this file's container.
    Variable.set("parse_v2_callback", f"{adr_testdep.__version__}@{socket.gethostname()}")


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    on_success_callback=record_callback,
)
def parse_v2():
    @task
    def version() -> str:
        return adr_testdep.__version__

    version()


parse_v2()
