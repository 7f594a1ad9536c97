"""The ``airflow docker-runtime`` command group."""
