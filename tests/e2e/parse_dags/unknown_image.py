"""Its sidecar names an image that does not exist."""

from airflow.sdk import DAG  # noqa: F401
