"""``airflow docker-runtime dag-processor`` and ``airflow docker-runtime parse``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def dag_processor(args: Any) -> None:
    """Run the upstream ``airflow dag-processor`` with container-backed parse children."""
    from airflow.cli.commands.dag_processor_command import dag_processor as upstream
    from airflow.dag_processing import manager

    from airflow_docker_runtime.parsing.processor import DockerDagFileProcessorProcess

    from airflow_docker_runtime.container.gc import sweep_on_start
    from airflow_docker_runtime.layers import runtime_flag
    from airflow_docker_runtime.resolve import operator_setting

    # The manager creates children through this module-level name; the flag is checked per file.
    manager.DagFileProcessorProcess = DockerDagFileProcessorProcess  # type: ignore[misc]
    try:
        docker_parsing = runtime_flag("parse") == "docker"
    except Exception:  # a bad flag becomes each file's import error; nothing to sweep for
        docker_parsing = False
    if docker_parsing:
        sweep_on_start(lambda: [operator_setting("socket_path", "parse")], background=False)  # before the first parse: a restarted processor's orphans
    upstream(args)


def parse_file(path: Path, timeout: float, *, in_container: bool = True) -> tuple[Any, float, str]:
    """Parse one DAG file in its container (or natively, to compare); returns (result or None, seconds, log)."""
    import io

    import structlog
    from uuid6 import uuid7

    from airflow.dag_processing.processor import DagFileProcessorProcess, in_process_api_server
    from airflow.sdk.api.client import Client

    from airflow_docker_runtime.parsing.processor import DockerDagFileProcessorProcess

    path = path.resolve()
    api = in_process_api_server()
    client = Client(base_url=None, token="", dry_run=True, transport=api.transport)
    client.base_url = "http://in-process.invalid./"  # type: ignore[assignment]
    buffer = io.StringIO()
    logger = structlog.wrap_logger(structlog.PrintLogger(buffer), processors=[structlog.dev.ConsoleRenderer(colors=False)])
    started = time.monotonic()
    start = DockerDagFileProcessorProcess.start_in_container if in_container else DagFileProcessorProcess.start
    proc = start(
        id=uuid7(),
        path=path,
        bundle_path=path.parent,
        bundle_name="docker-runtime-parse",
        dag_file_rel_path=path.name,
        callbacks=[],
        client=client,
        logger=logger,
        logger_filehandle=open(os.devnull, "wb"),
    )
    deadline = started + timeout
    try:
        while not proc.is_ready:
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"parsing {path} took longer than {timeout:g}s")
            proc._service_subprocess(max_wait_time=0.2)
    finally:
        proc.close()
    return proc.parsing_result, time.monotonic() - started, buffer.getvalue()
