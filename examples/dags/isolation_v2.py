"""Runs in image adr-test/dep-v2 (see the sidecar beside this file); the worker has no adr_testdep."""

from __future__ import annotations

import pendulum

from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["docker-runtime"])
def isolation_v2():
    @task
    def check_version() -> str:
        import adr_testdep

        assert adr_testdep.__version__.startswith("2."), adr_testdep.__version__
        print(f"adr_testdep {adr_testdep.__version__} inside the container")
        return adr_testdep.__version__

    @task(queue="native")
    def on_the_worker(version: str) -> str:
        import importlib.util

        assert importlib.util.find_spec("adr_testdep") is None, "the worker must not have adr_testdep"
        assert version.startswith("2."), version
        return f"worker received {version}"

    on_the_worker(check_version())


isolation_v2()
