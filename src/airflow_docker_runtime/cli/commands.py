"""What each ``airflow docker-runtime`` command does."""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml

from airflow_docker_runtime.errors import RuntimeSpecError
from airflow_docker_runtime.resolve import Resolution, resolve
from airflow_docker_runtime.spec import format_size


def _fail(message: str) -> None:
    print(message, file=sys.stderr)
    raise SystemExit(1)


def spec_rows(dag_file: str, task_id: str | None, purpose: str) -> list[dict[str, Any]]:
    """One row per spec key: key, value, source."""
    resolution = resolve(dag_file, purpose=purpose, task_id=task_id)  # type: ignore[arg-type]
    values = resolution.spec.model_dump(mode="json")
    values["volumes"] = [str(v) for v in resolution.spec.volumes]
    for key in ("memory", "shm_size", "tmpfs_size"):  # as an operator writes them: 512m, not 536870912
        values[key] = format_size(values[key]) if values[key] is not None else None
    return [{"key": key, "value": value, "source": resolution.sources.get(key, "default")} for key, value in values.items()]


def create_args(resolution: Resolution, purpose: str, dag_file: str) -> dict[str, Any]:
    """
    The Docker Engine API create request the runtime would send for ``resolution``: the container name
    and the JSON body of ``POST /containers/create``. Nothing is contacted.

    What only a launch knows is a placeholder: the per-run directory, the owner and try labels, the
    runtime's environment. The user assumes an image whose own user is root or unknown (the launch uses
    the image's numeric non-root ``Config.User`` instead, when it has one).
    """
    from pathlib import Path

    from docker.constants import DEFAULT_DOCKER_API_VERSION
    from docker.models.containers import _create_container_args
    from docker.types import ContainerConfig

    from airflow_docker_runtime import inside
    from airflow_docker_runtime.container.docker_args import LaunchRequest, create_kwargs

    kind = "task" if purpose == "task" else "parse"
    request = LaunchRequest(
        kind=kind,
        name=f"adr-{kind}-<identity>",
        run_dir=Path("<per-run directory>"),
        bootstrap_dir=Path(inside.__file__).parent,
        bundle_paths=(str(Path(dag_file).resolve().parent),),
        labels={"dag_file": str(dag_file), "...": "<owner and try labels>"},
        environment={"...": "<forwarded settings and bundle configuration>"},
    )
    args = _create_container_args({**create_kwargs(resolution.spec, request, host_env={}), "version": DEFAULT_DOCKER_API_VERSION})
    name = args.pop("name")
    return {"name": name, "body": dict(ContainerConfig(DEFAULT_DOCKER_API_VERSION, **args))}


def spec(args) -> None:
    """``airflow docker-runtime spec``: the effective runtime spec with the source of every value, or
    (``--create-args``) the exact Docker create request it becomes."""
    try:
        if getattr(args, "create_args", False):
            resolution = resolve(args.dag_file, purpose=args.purpose, task_id=args.task_id)
            document = create_args(resolution, args.purpose, args.dag_file)
            print(json.dumps(document, indent=2) if args.output != "yaml" else yaml.safe_dump(document, sort_keys=False), end="\n" if args.output != "yaml" else "")
            return
        rows = spec_rows(args.dag_file, args.task_id, args.purpose)
    except RuntimeSpecError as exc:
        _fail(str(exc))
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(rows, sort_keys=False), end="")
    else:
        print_table(rows)


def print_table(rows: list[dict[str, Any]]) -> None:
    cells = [[str(row[c]) if not isinstance(row[c], (dict, list)) else json.dumps(row[c]) for c in row] for row in rows]
    headers = list(rows[0]) if rows else []
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    for line in [headers, ["-" * w for w in widths], *cells]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def parse(args) -> None:
    """``airflow docker-runtime parse PATH``: parse one DAG file in its container."""
    from pathlib import Path

    from airflow_docker_runtime.parsing.command import parse_file

    path = Path(args.path)
    if not path.is_file():
        _fail(f"{path}: no such DAG file")
    result, seconds, log = parse_file(path, args.timeout)
    dag_ids = sorted(d.dag_id for d in result.serialized_dags) if result else []
    errors = (result.import_errors or {}) if result else {str(path): "no result from the parsing container"}
    report = {"file": str(path), "dag_ids": dag_ids, "import_errors": errors, "seconds": round(seconds, 3)}
    if args.output == "json":
        print(json.dumps(report, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(report, sort_keys=False), end="")
    else:
        print(log, end="", file=sys.stderr)
        print(f"file:    {path}\ndag ids: {', '.join(dag_ids) or '(none)'}\ntime:    {seconds:.3f}s")
        for name, error in errors.items():
            print(f"import error in {name}:\n{error}")
    if errors:
        raise SystemExit(1)


def test(args) -> None:
    """``airflow docker-runtime test DAG_ID TASK_ID [LOGICAL_DATE_OR_RUN_ID]``: one task, in its container, now."""
    from uuid import UUID

    import structlog

    from airflow.cli.commands.task_command import _get_ti
    from airflow.sdk.api.datamodels._generated import BundleInfo, TaskInstance as TaskInstanceSDK
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor
    from airflow.utils.cli import get_db_dag
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    from airflow_docker_runtime.coordinator import DockerCoordinator

    dag = get_db_dag(args.bundle_name, args.dag_id)
    ti, dag_run_created = _get_ti(
        dag.get_task(args.task_id), args.map_index, logical_date_or_run_id=args.logical_date_or_run_id, create_if_necessary="db"
    )
    try:
        ti.set_state(TaskInstanceState.QUEUED)
        what = TaskInstanceSDK(
            id=UUID(str(ti.id)), task_id=ti.task_id, dag_id=ti.dag_id, run_id=ti.run_id, try_number=ti.try_number,
            map_index=ti.map_index, dag_version_id=UUID(str(ti.dag_version_id)), queue=ti.queue,
        )
        bundle = BundleInfo(name=ti.dag_model.bundle_name, version=ti.dag_run.bundle_version)
        logger = structlog.wrap_logger(structlog.PrintLogger(sys.stdout), processors=[structlog.dev.ConsoleRenderer(colors=False)])
        # One try and the process ends: warming a pool for it would only start containers to throw away.
        result = DockerCoordinator(warm_pool_size=0).run_in_container(
            what=what,
            dag_rel_path=ti.dag_model.relative_fileloc,
            bundle_info=bundle,
            client=InProcessTestSupervisor._api_client(dag),
            task_log=logger,
            subprocess_logs_to_stdout=False,
        )
        print(f"Task {args.dag_id}.{args.task_id} finished: {result.final_state} (exit code {result.exit_code})")
    finally:
        if dag_run_created:
            with create_session() as session:
                session.delete(ti.dag_run)
    if result.final_state != "success":
        raise SystemExit(1)


def gc(args) -> None:
    """``airflow docker-runtime gc``: remove this host's containers and run directories whose supervisor is gone."""
    from dataclasses import asdict

    import docker.errors
    import requests

    from airflow_docker_runtime.container.gc import configured_socket_paths, sweep, sweep_run_dirs
    from airflow_docker_runtime.container.client import docker_client
    from airflow_docker_runtime.errors import DockerRuntimeError

    try:
        paths = [args.socket_path] if args.socket_path else configured_socket_paths()
        rows = []
        for path in paths:
            findings = sweep(docker_client(path), dry_run=args.dry_run, include_kept=args.include_kept)
            rows += [{**asdict(f), "daemon": path} for f in findings]
    except (DockerRuntimeError, docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        _fail(f"airflow docker-runtime gc: {exc}")
    dirs = [str(d) for d in sweep_run_dirs(dry_run=args.dry_run)]
    acted = [r for r in rows if r["action"] != "left"]
    if args.output == "json":
        print(json.dumps({"containers": rows, "run_directories": dirs}, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump({"containers": rows, "run_directories": dirs}, sort_keys=False), end="")
    else:
        if rows:
            print_table([{k: r[k] for k in ("name", "state", "kind", "what", "reason", "action")} for r in rows])
        done, deleted = ("would be cleaned up", "would be deleted") if args.dry_run else ("cleaned up", "deleted")
        print(f"{len(acted)} orphaned container(s) {done}, {len(rows) - len(acted)} left; {len(dirs)} run dir(s) {deleted}")


def doctor(args) -> None:
    """``airflow docker-runtime doctor``: check the set-up; exit 1 on any failure (warnings do not fail)."""
    from dataclasses import asdict
    from pathlib import Path

    from airflow.configuration import conf

    from airflow_docker_runtime.doctor import exit_code, report, run_checks

    checks = run_checks(Path(args.dag_folder or conf.get("core", "dags_folder")))
    if args.output == "json":
        print(json.dumps(report(checks), indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(report(checks), sort_keys=False), end="")
    else:
        print_table([asdict(c) for c in checks])
        failed, warned = (sum(1 for c in checks if c.status == s) for s in ("failure", "warning"))
        print(f"{'unhealthy' if failed else 'healthy'}: {len(checks)} checks, {failed} failure(s), {warned} warning(s)")
    raise SystemExit(exit_code(checks))
