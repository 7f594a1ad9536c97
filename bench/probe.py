"""The native runtime with one log line: when the supervisor received the workload, as the docker runtime logs it.

``DockerCoordinator.execute_task`` writes "Docker runtime: queue routed to a container" to the task log
first; Airflow's own Python coordinator writes nothing before its child's first line. The benchmark routes
its native queue here so both runtimes have a timestamped "workload received" line at the same point
(coordinator entry, after the supervisor set up its API client and task log). Everything else is
upstream's ``_PythonCoordinator``, unchanged.
"""

from __future__ import annotations

import structlog

from airflow.sdk.execution_time.coordinator import _PythonCoordinator

WORKLOAD_RECEIVED = "Bench: workload received, running natively"


class NativeProbeCoordinator(_PythonCoordinator):
    """Airflow's native Python coordinator plus the "workload received" line in the task log."""

    def execute_task(self, *, logger=None, **kwargs):
        (logger or structlog.get_logger(logger_name="task")).info(WORKLOAD_RECEIVED)
        return super().execute_task(logger=logger, **kwargs)
