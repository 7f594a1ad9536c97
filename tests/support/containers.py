"""Finding the containers of a DAG's tries, whether started for the try (labelled) or taken from the warm pool (named)."""

from __future__ import annotations

from airflow_docker_runtime.container.docker_args import LABEL_PREFIX, MANAGED_LABEL, container_name


def task_containers(docker_client, dag_id: str, all_states: bool = True) -> list[dict]:
    """Summaries (``docker ps`` entries) of this runtime's task containers for ``dag_id``, in one list call.

    A cold-started container carries the try's identity labels; a pooled one was created before its try
    was known and carries it in its name only (``adr-task-<dag_id>-<task_id>-<hash>``, given at claim).
    """
    prefix = container_name("task", dag_id, "x").rsplit("-", 2)[0] + "-"  # adr-task-<dag_id slug>-
    found = docker_client.api.containers(all=all_states, filters={"label": f"{MANAGED_LABEL}=true"})
    return [
        c for c in found
        if (c.get("Labels") or {}).get(f"{LABEL_PREFIX}.dag_id") == dag_id or c["Names"][0].lstrip("/").startswith(prefix)
    ]
