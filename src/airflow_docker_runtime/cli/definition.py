"""Arguments of ``airflow docker-runtime``; the commands themselves load lazily from ``commands``."""

from __future__ import annotations

from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

_COMMANDS = "airflow_docker_runtime.cli.commands"

ARG_DAG_FILE = Arg(("--dag-file",), help="Path of the DAG file", required=True)
ARG_TASK_ID = Arg(("--task-id",), help="Resolve for this task (per-task sidecar overrides apply)")
ARG_FOR = Arg(("--for",), dest="purpose", choices=("task", "parse"), default="task", help="Spec for task execution or DAG parsing")
ARG_PATH = Arg(("path",), help="Path of the DAG file")
ARG_TIMEOUT = Arg(("--timeout",), type=float, default=120.0, help="Seconds before the parse is killed")
ARG_DRY_RUN = Arg(("--dry-run",), action="store_true", help="Only report what would be cleaned up")
ARG_INCLUDE_KEPT = Arg(
    ("--include-kept",), action="store_true", help="Also remove orphans kept by remove_container_after_exit = False"
)
ARG_SOCKET_PATH = Arg(("--socket-path",), help="Only this Docker daemon (default: every daemon the configuration names)")
ARG_CREATE_ARGS = Arg(
    ("--create-args",),
    action="store_true",
    help="Print the Docker create request (name and API body) the spec becomes, without contacting Docker (JSON or YAML)",
)
ARG_DAG_FOLDER = Arg(
    ("--dag-folder",), help="Check the sidecars of this DAG folder and the images they name (default: [core] dags_folder)"
)
ARG_OUTPUT = Arg(("-o", "--output"), choices=("table", "json", "yaml"), default="table", help="Output format")


def get_cli_commands() -> list[GroupCommand]:
    """Provider ``cli`` entry: the ``docker-runtime`` group."""
    return [
        GroupCommand(
            name="docker-runtime",
            help="Runtime isolation: run tasks and DAG parsing in Docker containers",
            subcommands=(
                ActionCommand(
                    name="spec",
                    help="Print the effective runtime spec of a DAG file and where each value came from",
                    func=lazy_load_command(f"{_COMMANDS}.spec"),
                    args=(ARG_DAG_FILE, ARG_TASK_ID, ARG_FOR, ARG_CREATE_ARGS, ARG_OUTPUT),
                ),
                ActionCommand(
                    name="test",
                    help="Run one task in its container now, without a scheduler, printing its log "
                    "(AIP-46's --docker flag in Airflow 3 terms)",
                    func=lazy_load_command(f"{_COMMANDS}.test"),
                    args=_upstream_args("test", group="tasks", only=("dag_id", "task_id", "logical_date_or_run_id", "bundle_name", "map_index")),
                ),
                ActionCommand(
                    name="dag-processor",
                    help="Start a DAG processor whose parse children run in containers "
                    "(when [docker_runtime] scheduler_dag_parsing_runtime = docker)",
                    func=lazy_load_command("airflow_docker_runtime.parsing.command.dag_processor"),
                    args=_upstream_args("dag-processor"),
                ),
                ActionCommand(
                    name="parse",
                    help="Parse one DAG file in its container; print the DAG ids, import errors and time taken",
                    func=lazy_load_command(f"{_COMMANDS}.parse"),
                    args=(ARG_PATH, ARG_TIMEOUT, ARG_OUTPUT),
                ),
                ActionCommand(
                    name="gc",
                    help="Stop and remove this host's containers (and run directories) whose supervisor is gone",
                    func=lazy_load_command(f"{_COMMANDS}.gc"),
                    args=(ARG_DRY_RUN, ARG_INCLUDE_KEPT, ARG_SOCKET_PATH, ARG_OUTPUT),
                ),
                ActionCommand(
                    name="doctor",
                    help="Check this host's set-up: daemons, routing and flags, every sidecar and the Airflow "
                    "versions of every image they name; exit 1 on any failure",
                    func=lazy_load_command(f"{_COMMANDS}.doctor"),
                    args=(ARG_DAG_FOLDER, ARG_OUTPUT),
                ),
            ),
        )
    ]


def _upstream_args(name: str, group: str | None = None, only: tuple[str, ...] | None = None) -> tuple[Arg, ...]:
    """The upstream command's own arguments, so ours accepts the same options (``only``: those dests)."""
    from airflow.cli.cli_config import core_commands

    commands = core_commands
    if group is not None:
        commands = next(c for c in core_commands if c.name == group).subcommands
    args = tuple(next(c for c in commands if c.name == name).args)
    if only is not None:
        args = tuple(a for a in args if (a.kwargs.get("dest") or a.flags[-1].lstrip("-").replace("-", "_")) in only)
    return args
