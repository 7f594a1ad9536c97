"""The DAG parsing runtime: each DAG file's parse child runs in a container of that file's image.

Airflow 3.3 has no extension point for the DAG processor's child, so ``airflow docker-runtime
dag-processor`` runs the upstream manager with :class:`DockerDagFileProcessorProcess` in place of
``DagFileProcessorProcess`` (see ``docs/adr/0002-parsing-needs-its-own-command.md``). The manager still
persists serialized DAGs and import errors; only the child that imports the file, serializes its DAGs
and runs DAG-level callbacks moves into the container.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import attrs

from airflow.dag_processing.processor import DagFileParseRequest, DagFileParsingResult, DagFileProcessorProcess

from airflow_docker_runtime.container.docker_args import container_name
from airflow_docker_runtime.container.gc import sweep_if_due
from airflow_docker_runtime.container.forkserver import ForkedChild, launch_forked
from airflow_docker_runtime.container.launcher import launch
from airflow_docker_runtime.container.process import ContainerProcess
from airflow_docker_runtime.container.owner import owner_labels
from airflow_docker_runtime.container.supervised import (
    ContainerChildMixin,
    log_runtime_error,
    start_in_container,
    version_mismatch_error,
)
from airflow_docker_runtime.coordinator import container_environment
from airflow_docker_runtime.errors import DockerRuntimeError
from airflow_docker_runtime.inside.bootstrap import VERSION_MISMATCH
from airflow_docker_runtime.layers import runtime_flag
from airflow_docker_runtime.resolve import resolve
from airflow_docker_runtime.spec import format_size


def _report_import_error(rel_path: str, message: str) -> None:
    """Child entry point that answers the parse request with one import error (no DAG code runs)."""
    from pydantic import TypeAdapter

    from airflow.dag_processing.processor import ToDagProcessor, ToManager
    from airflow.sdk.execution_time import comms

    decoder = comms.CommsDecoder[ToDagProcessor, ToManager](body_decoder=TypeAdapter[ToDagProcessor](ToDagProcessor))
    request = decoder._get_response()
    if isinstance(request, DagFileParseRequest) and not request.callback_requests:
        decoder.send(DagFileParsingResult(fileloc=request.file, serialized_dags=[], import_errors={rel_path: message}))


@attrs.define(kw_only=True)
class DockerDagFileProcessorProcess(ContainerChildMixin, DagFileProcessorProcess):
    """Upstream ``DagFileProcessorProcess`` whose parse child lives in a container."""

    container: ContainerProcess | ForkedChild = attrs.field(repr=False)

    @classmethod
    def start(cls, **kwargs: Any):  # type: ignore[override]
        """Called by the upstream manager for each file: native or container, per the feature flag."""
        try:
            native = runtime_flag("parse") == "native"
        except DockerRuntimeError as exc:
            return cls._start_error_reporter(exc, kwargs)
        return DagFileProcessorProcess.start(**kwargs) if native else cls.start_in_container(**kwargs)

    @classmethod
    def start_in_container(
        cls,
        *,
        path: str | os.PathLike[str],
        bundle_path,
        bundle_name: str,
        dag_file_rel_path: str,
        callbacks: list,
        client,
        **kwargs: Any,
    ):
        """Parse ``path`` in a container of its parsing runtime spec; a runtime error is the file's import error."""
        try:
            resolution = resolve(path, purpose="parse")
            sweep_if_due([resolution.spec.socket_path])
            proc = start_in_container(
                cls,
                spec=resolution.spec,
                launcher=launch_forked if resolution.spec.fork_server else launch,
                request_args={
                    "kind": "parse",
                    "name": container_name("parse", dag_file_rel_path, kwargs["id"]),
                    "bundle_paths": (str(bundle_path),),
                    "labels": {
                        "dag_file": os.fspath(path),
                        "bundle": bundle_name,
                        **owner_labels(),
                    },
                    "environment": container_environment(),
                },
                client=client,
                bundle_name=bundle_name,
                dag_file_rel_path=dag_file_rel_path,
                **kwargs,
            )
        except Exception as exc:
            # The failure belongs to this file: it becomes the file's import error and the processor goes on.
            start_kwargs = dict(path=path, bundle_path=bundle_path, bundle_name=bundle_name, dag_file_rel_path=dag_file_rel_path)
            return cls._start_error_reporter(exc, {**start_kwargs, "callbacks": callbacks, "client": client, **kwargs})
        proc.had_callbacks = bool(callbacks)
        proc._on_child_started(callbacks, path, bundle_path, bundle_name)
        return proc

    @staticmethod
    def _start_error_reporter(exc: Exception, start_kwargs: dict[str, Any]):
        """
        A native child that answers the parse request with ``exc`` as the file's import error.

        Started like upstream ``DagFileProcessorProcess.start`` minus its first step, which imports on
        this host the ``airflow.*`` modules the file names: nothing a refused file names may run here.
        """
        log_runtime_error(start_kwargs["logger"], exc)
        message = f"Docker runtime: {type(exc).__name__}: {exc}"
        kwargs = dict(start_kwargs)
        path, bundle_path, callbacks = kwargs.pop("path"), kwargs.pop("bundle_path"), kwargs.pop("callbacks")
        target = functools.partial(_report_import_error, kwargs["dag_file_rel_path"], message)
        proc = super(DagFileProcessorProcess, DagFileProcessorProcess).start(target=target, **kwargs)
        proc.had_callbacks = bool(callbacks)
        proc._on_child_started(callbacks, path, bundle_path, kwargs["bundle_name"])
        return proc

    @property
    def is_ready(self) -> bool:
        ready = super().is_ready
        if ready and self.parsing_result is None and not self.had_callbacks:
            self._report_container_failure(self._exit_code)
        return ready

    def _report_container_failure(self, code: int | None) -> None:
        """A container that died without a result (OOM, timeout kill, broken image) is an import error."""
        outcome = self.container.outcome
        if outcome is not None and outcome.oom_killed:
            reason = f"the parsing container was killed: out of memory, limit {format_size(self.container.spec.memory)}"
        elif outcome is not None and outcome.exit_code == VERSION_MISMATCH:
            reason = version_mismatch_error(self.container.spec.image, outcome.startup_logs).removeprefix("Docker runtime: ")
        else:
            reason = f"the parsing container exited with code {code} without a result"
        self.parsing_result = DagFileParsingResult(
            fileloc=self.dag_file_rel_path, serialized_dags=[], import_errors={self.dag_file_rel_path: f"Docker runtime: {reason}"}
        )

    def close(self):
        try:
            super().close()
        finally:
            self.container.stop()
