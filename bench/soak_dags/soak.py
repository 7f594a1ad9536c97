"""The soak DAG (bench/soak.py): ``conf["tries"]`` short mapped tries, each a container of its own."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False, max_active_tasks=4)
def soak():
    @task
    def items() -> list[int]:
        return list(range(int(get_current_context()["dag_run"].conf.get("tries", 100))))

    @task
    def tiny(item: int) -> int:
        return item

    tiny.expand(item=items())


soak()
