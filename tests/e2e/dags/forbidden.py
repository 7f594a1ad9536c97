"""Its sidecar asks for a privileged container, which the default policy refuses."""

from __future__ import annotations

import pendulum

from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def forbidden():
    @task
    def escalate() -> None:
        raise AssertionError("must not run")

    escalate()


forbidden()
