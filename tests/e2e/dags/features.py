"""Everything an Airflow user relies on, run inside containers: XCom, Variables, Connections, templates,
context, logging, retries, dynamic task mapping, setup/teardown."""

from __future__ import annotations

import logging
import sys

import pendulum

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import Connection, Variable, dag, setup, task, teardown


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def features():
    @setup
    @task
    def create_resource() -> str:
        return "resource-ok"

    @task
    def push(**context) -> dict:
        import socket

        print("stdout line from the container")
        print("stderr line from the container", file=sys.stderr)
        logging.getLogger("user.code").warning("logging line from the container")
        conn = Connection.get("adr_conn")
        return {
            "variable": Variable.get("adr_var"),
            "conn_host": conn.host,
            "conn_password_len": len(conn.password or ""),
            "run_id": context["run_id"],
            "hostname": socket.gethostname(),
        }

    @task
    def pull(data: dict, resource: str) -> str:
        assert data["variable"] == "value-from-airflow", data
        assert data["conn_host"] == "db.example.com", data
        assert resource == "resource-ok"
        return f"{data['variable']}|{data['conn_host']}|{data['hostname']}"

    @task(retries=2, retry_delay=pendulum.duration(seconds=0))
    def flaky(**context) -> int:
        if context["ti"].try_number < 2:
            raise RuntimeError("first try fails on purpose")
        return context["ti"].try_number

    @task
    def double(x: int) -> int:
        return 2 * x

    @task
    def total(values) -> int:
        return sum(values)

    templated = BashOperator(task_id="templated", bash_command="echo 'rendered run_id={{ run_id }} dag={{ dag.dag_id }}'")

    @teardown
    @task
    def delete_resource(resource: str) -> None:
        print(f"tearing down {resource}")

    resource = create_resource()
    data = push()
    pulled = pull(data, resource)
    doubled = double.expand(x=[1, 2, 3])
    summed = total(doubled)
    [pulled, flaky(), summed, templated] >> delete_resource(resource)


features()
