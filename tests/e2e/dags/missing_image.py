"""Its sidecar names an image that does not exist anywhere."""

from __future__ import annotations

import pendulum

from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def missing_image():
    @task
    def unreachable() -> None:
        raise AssertionError("must not run")

    unreachable()


missing_image()
