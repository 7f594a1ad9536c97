"""The task execution runtime: ``DockerCoordinator``, plugged in through Airflow's ``[sdk] coordinators``.

The supervisor (heartbeats, the JWT, Execution API calls, logs, timeouts, final state) stays on the
worker; only the task runner child runs in a container of the DAG file's image.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import structlog

from airflow.sdk.execution_time.coordinator import BaseCoordinator, _PythonCoordinator
from airflow.sdk.execution_time.supervisor import ActivitySubprocess

from airflow_docker_runtime.container.docker_args import container_name, forwarded_config
from airflow_docker_runtime.container.gc import sweep_if_due, sweep_on_start
from airflow_docker_runtime.container.forkserver import ForkedChild, launch_forked
from airflow_docker_runtime.container.launcher import launch
from airflow_docker_runtime.container.process import ContainerProcess
from airflow_docker_runtime.container.owner import owner_labels
from airflow_docker_runtime.container.supervised import ContainerChildMixin, log_runtime_error, start_in_container
from airflow_docker_runtime.errors import DockerRuntimeError
from airflow_docker_runtime.layers import layer_from_mapping, runtime_flag
from airflow_docker_runtime.resolve import operator_setting, resolve

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

log = structlog.get_logger(__name__)

LOCAL_BUNDLE_CLASS = "airflow.dag_processing.bundles.local.LocalDagBundle"


@attrs.define(kw_only=True)
class ContainerActivitySubprocess(ContainerChildMixin, ActivitySubprocess):
    """Upstream ``ActivitySubprocess`` whose task runner lives in a container."""

    container: ContainerProcess | ForkedChild = attrs.field(repr=False)


def task_labels(ti: Any) -> dict[str, str]:
    """The try's identity and its owner (host, boot, supervisor PID and start time) as container labels."""
    return {
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "run_id": ti.run_id,
        "map_index": str(ti.map_index if ti.map_index is not None else -1),
        "try_number": str(ti.try_number),
        "ti_id": str(ti.id),
        **owner_labels(),
    }


def bundle_environment(name: str, path: Path) -> dict[str, str]:
    """The container sees the bundle, already prepared by the worker, as a local bundle at the same path."""
    config = [{"name": name, "classpath": LOCAL_BUNDLE_CLASS, "kwargs": {"path": str(path)}}]
    return {"AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(config)}


def container_environment() -> dict[str, str]:
    from airflow.configuration import conf

    return forwarded_config(lambda section, key: conf.get(section, key, fallback=None))


class DockerCoordinator(BaseCoordinator):
    """
    Runs each task try routed to it in a container of its DAG file's image.

    Keyword arguments (the entry's ``kwargs`` in ``[sdk] coordinators``) are runtime settings, applied
    after ``[task_execution_docker_runtime]`` and before the DAG's sidecar -- e.g.
    ``{"memory": "512m"}`` or ``{"network_mode": "none"}`` for a queue.
    """

    def __init__(self, **options: Any) -> None:
        layer_from_mapping(options, "[sdk] coordinators kwargs", trusted=True)  # fail fast on a typo
        self.options = options
        # Built on a worker's first task routed here: a restarted worker cleans up after its predecessor.
        sweep_on_start(lambda: [operator_setting("socket_path", "task", options)])

    def execute_task(
        self,
        *,
        what,
        dag_rel_path,
        bundle_info,
        client,
        logger: FilteringBoundLogger | None = None,
        sentry_integration: str = "",
        subprocess_logs_to_stdout: bool,
        **kwargs,
    ) -> BaseCoordinator.ExecutionResult:
        task_log: FilteringBoundLogger = logger or structlog.get_logger(logger_name="task").bind()
        try:
            native = runtime_flag("task") == "native"
        except DockerRuntimeError as exc:
            return fail_before_start(what, client, task_log, exc)
        common = dict(
            what=what,
            dag_rel_path=dag_rel_path,
            bundle_info=bundle_info,
            client=client,
            sentry_integration=sentry_integration,
            subprocess_logs_to_stdout=subprocess_logs_to_stdout,
        )
        if native:
            task_log.info("Docker runtime: [docker_runtime] task_execution_runtime = native; running on the worker")
            return _PythonCoordinator().execute_task(logger=logger, **common)
        task_log.info("Docker runtime: queue routed to a container", queue=what.queue, routed_queues=routed_queues())
        return self.run_in_container(task_log=task_log, **common)

    def run_in_container(
        self, *, what, dag_rel_path, bundle_info, client, task_log, sentry_integration: str = "", subprocess_logs_to_stdout: bool = False
    ) -> BaseCoordinator.ExecutionResult:
        """Run one task try in a container of its runtime spec (whatever the feature flag says)."""
        try:
            from airflow.dag_processing.bundles.manager import DagBundlesManager

            bundle = DagBundlesManager().get_bundle(name=bundle_info.name, version=bundle_info.version)
            bundle.initialize()
            dag_file = Path(bundle.path, dag_rel_path)
            resolution = resolve(dag_file, purpose="task", task_id=what.task_id, coordinator_options=self.options)
            task_log.info("Docker runtime: resolved runtime spec", image=resolution.spec.image, sidecar=str(resolution.sidecar or "none"))
            sweep_if_due([resolution.spec.socket_path])
            proc = start_in_container(
                ContainerActivitySubprocess,
                spec=resolution.spec,
                # fork_server (opt-in per queue): a child forked in one container per spec, not a container per try.
                launcher=launch_forked if resolution.spec.fork_server else launch,
                request_args={
                    "kind": "task",
                    "name": container_name("task", what.dag_id, what.task_id, what.run_id, what.map_index, what.try_number, what.id),
                    "bundle_paths": (str(bundle.path),),
                    "labels": {**task_labels(what), "dag_file": str(dag_file)},
                    "environment": {**container_environment(), **bundle_environment(bundle_info.name, bundle.path)},
                },
                logger=task_log,
                id=what.id,
                client=client,
                subprocess_logs_to_stdout=subprocess_logs_to_stdout,
            )
        except Exception as exc:
            # The boundary between a task and the runtime: whatever went wrong before the child started
            # (bad sidecar, no image, no daemon, a bug here) fails this try with the reason in its log.
            return fail_before_start(what, client, task_log, exc)

        try:
            proc._on_child_started(ti=what, dag_rel_path=dag_rel_path, bundle_info=bundle_info, sentry_integration=sentry_integration)
            exit_code = proc.wait()
            return self.ExecutionResult(exit_code, proc.final_state)
        finally:
            proc.container.stop()


def routed_queues() -> dict[str, str]:
    """``[sdk] queue_to_coordinator`` as configured (for the task log: which queues go to containers)."""
    from airflow.sdk.configuration import conf

    return conf.getjson("sdk", "queue_to_coordinator", fallback={}) or {}


def fail_before_start(what, client, task_log: FilteringBoundLogger, exc: Exception) -> BaseCoordinator.ExecutionResult:
    """
    Report a runtime error as the task's failure, with the message in the task log.

    The try is moved to running and then to failed -- or up_for_retry when it has retries left -- so the
    scheduler retries it like any failed try and the UI shows why.
    """
    from airflow.sdk.api.datamodels._generated import TaskInstanceState

    log_runtime_error(task_log, exc)
    now = datetime.now(tz=timezone.utc)
    context = client.task_instances.start(what.id, os.getpid(), now)
    state = TaskInstanceState.UP_FOR_RETRY if context.should_retry else TaskInstanceState.FAILED
    client.task_instances.finish(id=what.id, state=state, when=now, rendered_map_index=None)
    return BaseCoordinator.ExecutionResult(1, state)
