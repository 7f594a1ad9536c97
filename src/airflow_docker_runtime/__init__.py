"""airflow-docker-runtime: run each DAG's tasks and parsing in Docker containers (AIP-46 for Airflow 3.3)."""

__version__ = "0.1.0"
