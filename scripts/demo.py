"""`make demo`: Airflow on its embedded default (SQLite, LocalExecutor) with the docker runtime for tasks
and parsing; runs the example DAGs and prints, for each task, its state and the image it ran in."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.stack import AirflowStack  # noqa: E402

EXPECTED = {
    "isolation_v1": {"check_version": "adr-test/dep-v1:latest", "on_the_worker": "worker (native)"},
    "isolation_v2": {"check_version": "adr-test/dep-v2:latest", "on_the_worker": "worker (native)"},
    "top_level_import": {"report": "adr-test/dep-v1:latest"},
}


def image_of(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> str:
    response = stack.api.get(
        f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1",
        params={"full_content": True},
        headers={"Accept": "application/json"},
    )
    for item in response.json().get("content", []):
        if isinstance(item, dict) and item.get("event") == "Started container":
            return item["image"]
    return "worker (native)"


def main() -> int:
    home = REPO / ".cache" / "demo"
    shutil.rmtree(home, ignore_errors=True)
    config = {
        "sdk": {
            "coordinators": json.dumps({"docker": {"classpath": "airflow_docker_runtime.coordinator.DockerCoordinator"}}),
            "queue_to_coordinator": json.dumps({"default": "docker"}),
        },
        "docker_runtime": {
            "task_execution_runtime": "docker",
            "scheduler_dag_parsing_runtime": "docker",
            "container_repository": "adr-test/base",
        },
    }
    stack = AirflowStack(home, REPO / "examples" / "dags", config=config, dag_processor=("docker-runtime", "dag-processor"))
    print(f"Starting Airflow (SQLite, LocalExecutor) in {home} with the docker runtime ...", flush=True)
    failures = 0
    with stack:
        stack.wait_for_dags(EXPECTED)
        errors = stack.import_errors()
        for error in errors:
            print(f"import error in {error['filename']}:\n{error['stack_trace']}")
        failures += len(errors)
        runs = {dag_id: stack.trigger(dag_id) for dag_id in EXPECTED}
        print(f"\n{'DAG':<18} {'task':<15} {'state':<9} ran in")
        for dag_id, run_id in runs.items():
            stack.wait_for_run(dag_id, run_id, timeout=300)
            tis = stack.task_instances(dag_id, run_id)
            for task_id, expected_image in EXPECTED[dag_id].items():
                state = tis.get(task_id, {}).get("state")
                image = image_of(stack, dag_id, run_id, task_id)
                ok = state == "success" and image == expected_image
                failures += not ok
                print(f"{dag_id:<18} {task_id:<15} {state!s:<9} {image}{'' if ok else f'   <-- expected success in {expected_image}'}")
    print("\nDemo OK: every task ran where its sidecar said." if not failures else f"\nDemo FAILED: {failures} problem(s).")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
