"""A DAG file the soak's DAG processor parses again and again (bench/soak.py)."""

import pendulum
from airflow.sdk import dag


@dag(dag_id="parse_probe_4", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
def probe():
    pass


probe()
