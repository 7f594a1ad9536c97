"""Code that runs inside the container: standard library and Airflow only."""
