"""Arguments of ``airflow docker-runtime``; the commands themselves load lazily from ``commands``."""

from __future__ import annotations

from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

_COMMANDS = "airflow_docker_runtime.cli.commands"

ARG_DAG_FILE = Arg(("--dag-file",), help="Path of the DAG file", required=True)
ARG_TASK_ID = Arg(("--task-id",), help="Resolve for this task (per-task sidecar overrides apply)")
ARG_FOR = Arg(("--for",), dest="purpose", choices=("task", "parse"), default="task", help="Spec for task execution or DAG parsing")
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
                    args=(ARG_DAG_FILE, ARG_TASK_ID, ARG_FOR, ARG_OUTPUT),
                ),
            ),
        )
    ]
