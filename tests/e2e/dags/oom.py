"""Allocates far more than the container's memory limit (sidecar: 256m): the kernel OOM-kills it."""

from __future__ import annotations

import pendulum

from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def oom():
    @task(retries=1, retry_delay=pendulum.duration(hours=1))
    def hog() -> None:
        blocks = []
        for _ in range(64):
            blocks.append(bytearray(32 * 1024 * 1024))  # 2 GiB in total, touched page by page
        print(len(blocks))

    hog()


oom()
