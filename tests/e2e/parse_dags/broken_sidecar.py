"""A valid DAG file whose sidecar has a typo: an import error on this file, nothing else."""

from __future__ import annotations

import pendulum

from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def broken_sidecar():
    @task
    def never() -> None: ...

    never()


broken_sidecar()
