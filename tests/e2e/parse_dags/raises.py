"""An airflow DAG file that raises at import time, inside its container."""

raise ValueError("boom from the DAG file")
