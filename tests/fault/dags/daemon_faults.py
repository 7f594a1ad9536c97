"""DAGs of the daemon fault tests (tests/fault/test_daemon_faults_airflow.py): their tries run in containers
on the private daemon, which the tests stop and restart."""

from __future__ import annotations

import time
from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

START = pendulum.datetime(2024, 1, 1, tz="UTC")


@dag(schedule=None, start_date=START, catchup=False)
def daemon_down_before():
    @task(retries=1, retry_delay=timedelta(seconds=2))
    def quick():
        print("quick task ran", flush=True)

    quick()


@dag(schedule=None, start_date=START, catchup=False)
def daemon_down_during():
    @task(retries=1, retry_delay=timedelta(hours=1))
    def slow():
        print("slow task started", flush=True)
        time.sleep(300)

    slow()


@dag(schedule=None, start_date=START, catchup=False)
def daemon_restarted_during():
    @task
    def survives():
        print("survivor started", flush=True)
        time.sleep(20)
        print("survivor done", flush=True)

    survives()


daemon_down_before()
daemon_down_during()
daemon_restarted_during()
