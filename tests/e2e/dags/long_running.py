"""Tasks that stay running until the test releases them (through an Airflow Variable), so the test can
inspect the live container, mark the task failed, and check that nothing survives the container."""

from __future__ import annotations

import subprocess
import time

import pendulum

from airflow.sdk import Variable, dag, task

START = pendulum.datetime(2026, 1, 1, tz="UTC")


@dag(schedule=None, start_date=START, catchup=False)
def leak_check():
    @task
    def escape_attempt() -> str:
        # A background process in a new session that ignores SIGTERM: only the container's end can kill it.
        subprocess.Popen(
            ["setsid", "sh", "-c", "trap '' TERM; exec sleep 4242"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while Variable.get("leak_check_release", default="no") != "yes":
            if time.monotonic() > deadline:
                raise TimeoutError("the test never released this task")
            time.sleep(0.5)
        return "released"

    escape_attempt()


@dag(schedule=None, start_date=START, catchup=False)
def mark_failed():
    @task
    def sleeper() -> None:
        time.sleep(600)

    sleeper()


leak_check()
mark_failed()
