"""Celery workers sweep this host's orphaned containers as soon as they are ready, before any task.

Use it as the Celery configuration (it is Airflow's default one, unchanged)::

    [celery]
    celery_config_options = airflow_docker_runtime.integrations.celery.CELERY_CONFIG

Importing this module (which Airflow does to read that option) connects the ``worker_ready`` handler. With
your own Celery configuration, import this module from it instead. Without either, a worker sweeps when
its first task routed to a ``DockerCoordinator`` arrives.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_ready

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

from airflow_docker_runtime.container.gc import configured_socket_paths, sweep_on_start

CELERY_CONFIG: dict[str, Any] = dict(DEFAULT_CELERY_CONFIG)


@worker_ready.connect
def sweep_when_ready(**_: Any) -> None:
    """Remove what a killed predecessor on this host left behind (``[docker_runtime] gc_on_start``)."""
    sweep_on_start(configured_socket_paths, background=False)
