"""An airflow DAG file that never finishes importing: the dag_file_processor_timeout must kill its container."""

import time

time.sleep(3600)
