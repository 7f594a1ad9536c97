"""A real Airflow 3.3 deployment in a temporary AIRFLOW_HOME: api-server, scheduler, DAG processor, triggerer.

Used by the end-to-end tests, ``make demo`` and the benchmarks. Every wait is on a condition with a
deadline; every process is stopped on exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PG_URL = "postgresql+psycopg2://airflow:airflow@127.0.0.1:5432/airflow"


def pg_database(name: str) -> str:
    """URL of database ``name`` on the project's PostgreSQL, created (owned by ``airflow``) if missing.

    Each suite (e2e, celery, bench) has its own database: ``AirflowStack.start`` resets it, and two
    suites sharing one would destroy each other's state.
    """
    import psycopg2

    if name != "airflow":
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="airflow", password="airflow", dbname="airflow")
        admin.autocommit = True
        try:
            with admin.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}" OWNER airflow')
        finally:
            admin.close()
    return PG_URL.rsplit("/", 1)[0] + f"/{name}"


COORDINATOR = "airflow_docker_runtime.coordinator.DockerCoordinator"


def coordinator_entry(queue: str, **kwargs: str) -> dict[str, dict[str, str]]:
    """``[sdk]`` settings routing ``queue`` to one ``DockerCoordinator`` entry with ``kwargs`` (one worker's own)."""
    return {
        "sdk": {
            "coordinators": json.dumps({"docker": {"classpath": COORDINATOR, "kwargs": kwargs}}),
            "queue_to_coordinator": json.dumps({queue: "docker"}),
        }
    }


def celery_settings(redis_db: int, database: str) -> dict[str, dict[str, str]]:
    """CeleryExecutor with Redis database ``redis_db`` as broker and PostgreSQL ``database`` as result backend."""
    db_url = pg_database(database)
    return {
        "core": {"executor": "CeleryExecutor"},
        "celery": {
            "broker_url": f"redis://127.0.0.1:6379/{redis_db}",
            "result_backend": "db+" + db_url,
        },
    }


def wait_for(condition: Callable[[], Any], *, timeout: float, interval: float = 0.5, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AirflowStack:
    """Start and drive a real Airflow deployment; ``config`` is ``{section: {key: value}}``."""

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        *,
        db_url: str | None = None,
        executor: str = "LocalExecutor",
        config: dict[str, dict[str, str]] | None = None,
        components: Iterable[str] = ("api-server", "scheduler", "dag-processor", "triggerer"),
        dag_processor: tuple[str, ...] = ("dag-processor",),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.home = home
        self.dags_folder = dags_folder
        self.port = free_port()
        self.components = tuple(components)
        self.dag_processor = dag_processor
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        self.env.update(extra_env or {})
        settings = {
            ("core", "dags_folder"): str(dags_folder),
            ("core", "executor"): executor,
            ("core", "load_examples"): "False",
            ("core", "simple_auth_manager_all_admins"): "True",
            ("core", "execution_api_server_url"): f"http://127.0.0.1:{self.port}/execution/",
            ("core", "parallelism"): "8",
            ("api", "port"): str(self.port),
            ("api", "base_url"): f"http://127.0.0.1:{self.port}",
            ("api_auth", "jwt_secret"): "e2e-jwt-secret-do-not-leak",
            ("core", "fernet_key"): "sDk3Yx4bVn0uAqjbcx1c6Gm1nV9uEGdI4dS9m5b1Zp8=",
            ("dag_processor", "refresh_interval"): "5",
            ("dag_processor", "min_file_process_interval"): "10",
            ("scheduler", "task_queued_timeout"): "300",
            ("logging", "base_log_folder"): str(home / "logs"),
        }
        if db_url:
            settings[("database", "sql_alchemy_conn")] = db_url
        for section, values in (config or {}).items():
            for key, value in values.items():
                settings[(section, key)] = value
        for (section, key), value in settings.items():
            self.env[f"AIRFLOW__{section.upper()}__{key.upper()}"] = value
        self.env["AIRFLOW_HOME"] = str(home)
        self.env["PATH"] = f"{VENV_BIN}:{self.env.get('PATH', '')}"
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}/api/v2", timeout=30)

    # -- lifecycle ----------------------------------------------------------------------------------
    def airflow(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(VENV_BIN / "airflow"), *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=check
        )

    def start(self) -> AirflowStack:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        result = self.airflow("db", "reset", "--yes", "--skip-init", check=False)
        result = self.airflow("db", "migrate", check=False)
        if result.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{result.stdout}\n{result.stderr}")
        for component in self.components:
            command = self.dag_processor if component == "dag-processor" else (component,)
            out = open(self.home / f"{component}.log", "ab")
            self.procs[component] = subprocess.Popen(
                [str(VENV_BIN / "airflow"), *command], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(self._healthy, timeout=180, what="the api-server to answer")
        return self

    def start_worker(
        self, name: str, queues: str, config: dict[str, dict[str, str]] | None = None, concurrency: int = 2
    ) -> subprocess.Popen:
        """Start ``airflow celery worker`` for ``queues`` with its own settings; return once Celery says it is ready.

        The worker runs in a session of its own: ``os.killpg(proc.pid, ...)`` reaches its pool processes too.
        """
        env = dict(self.env)
        settings = {("logging", "worker_log_server_port"): str(free_port())}
        for section, values in (config or {}).items():
            for key, value in values.items():
                settings[(section, key)] = value
        for (section, key), value in settings.items():
            env[f"AIRFLOW__{section.upper()}__{key.upper()}"] = value
        log_path = self.home / f"worker-{name}.log"
        start = log_path.stat().st_size if log_path.exists() else 0
        proc = subprocess.Popen(
            [str(VENV_BIN / "airflow"), "celery", "worker", "--queues", queues, "--concurrency", str(concurrency),
             "--celery-hostname", f"{name}@%h"],
            env=env, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.procs[f"worker-{name}"] = proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker {name} exited with {proc.returncode}:\n{self.component_log(f'worker-{name}')[-3000:]}")
            return " ready." in self.component_log(f"worker-{name}")[start:]

        wait_for(ready, timeout=120, what=f"celery worker {name} to be ready")
        return proc

    def worker_log(self, name: str) -> str:
        return self.component_log(f"worker-{name}")

    def _healthy(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{self.component_log(name)[-3000:]}")
        try:
            return self.api.get("/monitor/health").status_code == 200
        except httpx.HTTPError:
            return False

    def component_log(self, name: str) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.api.close()

    def __enter__(self) -> AirflowStack:
        try:
            return self.start()
        except BaseException:  # __exit__ does not run when __enter__ fails: stop what did start
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- API ----------------------------------------------------------------------------------------
    def get(self, path: str, **params: Any) -> Any:
        response = self.api.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def dag_ids(self) -> set[str]:
        return {dag["dag_id"] for dag in self.get("/dags", limit=1000)["dags"]}

    def import_errors(self) -> list[dict[str, Any]]:
        return self.get("/importErrors", limit=1000)["import_errors"]

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 180) -> None:
        wanted = set(dag_ids)
        wait_for(lambda: wanted <= self.dag_ids(), timeout=timeout, what=f"DAGs {sorted(wanted)} to be parsed")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        self.api.patch(f"/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
        response = self.api.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        response.raise_for_status()
        return response.json()["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        return wait_for(
            lambda: (s := self.run_state(dag_id, run_id)) in ("success", "failed") and s,
            timeout=timeout,
            interval=1,
            what=f"run {dag_id}/{run_id} to finish",
        )

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        tis: list[dict[str, Any]] = []
        while True:  # the API caps a page at [api] maximum_page_limit (100 by default)
            page = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100, offset=len(tis))
            tis += page["task_instances"]
            if not page["task_instances"] or len(tis) >= page["total_entries"]:
                break
        return {ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]": ti for ti in tis}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        response = self.api.get(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": True, "map_index": map_index},
            headers={"Accept": "application/json"},
        )
        response.raise_for_status()
        content = response.json()["content"]
        lines = []
        for item in content:
            if isinstance(item, dict):
                extra = {k: v for k, v in item.items() if k not in ("event", "timestamp", "level", "logger")}
                lines.append(f"{item.get('level', '')} {item.get('event', '')} {extra}")
            else:
                lines.append(str(item))
        return "\n".join(lines)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}", deserialize=True)["value"]
