"""Imports adr_testdep at module level: only a DAG processor that parses it in its image can load it."""

from __future__ import annotations

import adr_testdep
import pendulum

from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["docker-runtime"])
def top_level_import():
    @task
    def report() -> str:
        return f"parsed and run with adr_testdep {adr_testdep.__version__}"

    report()


top_level_import()
