"""Fixtures for end-to-end tests: a real Airflow 3.3 (LocalExecutor, PostgreSQL) and a real Docker daemon."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.stack import COORDINATOR, PG_URL, REPO, AirflowStack

E2E_DAGS = Path(__file__).parent / "dags"
EXAMPLE_DAGS = REPO / "examples" / "dags"
NO_DAEMON_SOCKET = "unix:///tmp/adr-e2e-no-daemon.sock"


def require(condition: bool, reason: str) -> None:
    """Skip with a visible reason on a laptop; fail under CI=true (CI must never skip silently)."""
    if not condition:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)


def postgres_answers() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432"], capture_output=True).returncode == 0


def docker_config(**docker_runtime: str) -> dict[str, dict[str, str]]:
    return {
        "sdk": {
            "coordinators": json.dumps(
                {
                    "docker": {"classpath": COORDINATOR},
                    "docker-no-daemon": {"classpath": COORDINATOR, "kwargs": {"socket_path": NO_DAEMON_SOCKET}},
                }
            ),
            "queue_to_coordinator": json.dumps({"default": "docker", "no-daemon": "docker-no-daemon"}),
        },
        "docker_runtime": {"task_execution_runtime": "docker", "container_repository": "adr-test/base", **docker_runtime},
        # hardened.py's control task asks for bridge; everything else runs with the default, none.
        "docker_runtime_policy": {"allowed_network_modes": "bridge", "allowed_label_prefixes": "adr-test."},
    }


def dags_folder(tmp: Path, *sources: Path) -> Path:
    folder = tmp / "dags"
    folder.mkdir()
    for source in sources:
        for item in source.iterdir():
            if item.is_file():
                shutil.copy2(item, folder / item.name)
    return folder


@pytest.fixture(scope="module")
def stack(tmp_path_factory, docker_client):
    """Airflow with every queue but `native` routed to the DockerCoordinator; native DAG parsing."""
    require(postgres_answers(), "PostgreSQL does not answer on 127.0.0.1:5432 (run scripts/ensure-postgres.sh)")
    tmp = tmp_path_factory.mktemp("stack")
    with AirflowStack(tmp / "home", dags_folder(tmp, EXAMPLE_DAGS, E2E_DAGS), db_url=PG_URL, config=docker_config()) as s:
        s.api.post("/variables", json={"key": "adr_var", "value": "value-from-airflow"}).raise_for_status()
        s.api.post(
            "/connections",
            json={"connection_id": "adr_conn", "conn_type": "generic", "host": "db.example.com", "password": "s3cr3t-pw"},
        ).raise_for_status()
        yield s

