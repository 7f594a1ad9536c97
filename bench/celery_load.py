"""Load test of the docker runtime on CeleryExecutor: 200 short tasks across two workers.

    .venv/bin/python bench/celery_load.py [--per-queue 100] [--concurrency 2] [--write]

A real deployment on this machine (api-server, scheduler, DAG processor, triggerer, Redis broker,
PostgreSQL metadata + result backend) with two ``airflow celery worker`` processes, each serving one
queue through its own coordinator entry (one with a 256m memory limit, one with ``network_mode: none``),
as in tests/e2e/test_celery.py. One run of the ``celery_load`` DAG maps ``per_queue`` tasks onto each
queue. Reports completed, failed, lost (not finished when the run ended or the deadline passed),
containers left behind and throughput into bench/celery_load.json; ``--write`` also puts them into
docs/benchmarks.md (``--render bench/celery_load.json`` does only that).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import write_section  # noqa: E402
from tests.support.stack import AirflowStack, celery_settings, coordinator_entry, pg_database, wait_for  # noqa: E402

DAGS = REPO / "tests" / "e2e" / "celery_dags"
REDIS_DB = 6
RESULT = REPO / "bench" / "celery_load.json"
BEGIN, END = "<!-- celery-load:begin -->", "<!-- celery-load:end -->"
FINISHED = {"success", "failed", "upstream_failed", "skipped"}


def managed_containers() -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=airflow-docker-runtime.managed=true", "--filter", "label=airflow-docker-runtime.dag_id=celery_load"],
        capture_output=True, text=True, check=True,
    ).stdout
    return out.split()


def parse_time(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def run(per_queue: int, concurrency: int, deadline: float) -> dict:
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-n", str(REDIS_DB), "flushdb"], check=True, capture_output=True)
    tmp = Path(tempfile.mkdtemp(prefix="adr-celery-load-"))
    config = celery_settings(REDIS_DB, "airflow_celery_load")
    config["docker_runtime"] = {"task_execution_runtime": "docker", "container_repository": "adr-test/base"}
    config["core"]["parallelism"] = str(4 * concurrency)
    config["core"]["max_active_tasks_per_dag"] = str(4 * concurrency)
    stack = AirflowStack(tmp / "home", DAGS, db_url=pg_database("airflow_celery_load"), config=config)
    try:
        with stack:
            stack.start_worker("small", "small", coordinator_entry("small", memory="256m"), concurrency=concurrency)
            stack.start_worker("isolated", "isolated", coordinator_entry("isolated", network_mode="none"), concurrency=concurrency)
            stack.wait_for_dags(["celery_load"])
            triggered = time.time()
            run_id = stack.trigger("celery_load", conf={"per_queue": per_queue})
            try:
                state = stack.wait_for_run("celery_load", run_id, timeout=deadline)
            except TimeoutError:
                state = "timed out"
            finished = time.time()
            tis = [ti for key, ti in stack.task_instances("celery_load", run_id).items() if key.startswith("quick_")]
            left_running = managed_containers()
            # Removal runs right after each container exits: give it a bounded moment, then count.
            try:
                wait_for(lambda: not managed_containers(), timeout=30, interval=0.5, what="containers to be removed")
            except TimeoutError:
                pass
            left = managed_containers()
            worker_logs = {name: stack.worker_log(name) for name in ("small", "isolated")}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    states = [ti["state"] for ti in tis]
    starts = [parse_time(ti["start_date"]) for ti in tis if ti["start_date"]]
    ends = [parse_time(ti["end_date"]) for ti in tis if ti["end_date"]]
    durations = [ti["duration"] for ti in tis if ti["state"] == "success" and ti["duration"] is not None]
    waits = [
        parse_time(ti["start_date"]) - parse_time(ti["queued_when"])
        for ti in tis if ti["state"] == "success" and ti["start_date"] and ti["queued_when"]
    ]
    completed = states.count("success")
    span = (max(ends) - min(starts)) if starts and ends else float("nan")
    return {
        "command": f".venv/bin/python bench/celery_load.py --per-queue {per_queue} --concurrency {concurrency}",
        "date": datetime.now().strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}",
        "run_state": state,
        "tasks": len(tis),
        "completed": completed,
        "failed": sum(s in ("failed", "upstream_failed") for s in states),
        "lost": sum(s not in FINISHED for s in states) + (2 * per_queue - len(tis)),
        "containers_left_at_run_end": len(left_running),
        "containers_left_behind": len(left),
        "tasks_per_worker": {name: log.count("Executing workload in Celery") for name, log in worker_logs.items()},
        "throughput_tasks_per_s": round(completed / span, 2) if span == span and span > 0 else None,
        "first_start_to_last_end_s": round(span, 1),
        "trigger_to_run_end_s": round(finished - triggered, 1),
        "task_duration_p50_s": round(statistics.median(durations), 2) if durations else None,
        "task_duration_p95_s": round(p95(durations), 2) if durations else None,
        "queued_to_start_p50_s": round(statistics.median(waits), 2) if waits else None,
        "queued_to_start_p95_s": round(p95(waits), 2) if waits else None,
        "worker_concurrency": concurrency,
    }


def markdown(r: dict) -> str:
    return f"""{BEGIN}
## Load on CeleryExecutor (issue "Scale out")

Command: `{r['command']}` (Redis broker, PostgreSQL metadata + result backend, two `airflow celery
worker` processes on this machine, one per queue, each with its own coordinator entry: `memory: 256m`
on one, `network_mode: none` on the other). Machine: {r['machine']}. Date: {r['date']}.

| tasks | completed | failed | lost | containers left behind | throughput | first start -> last end | executions per worker |
|---|---|---|---|---|---|---|---|
| {r['tasks']} | {r['completed']} | {r['failed']} | {r['lost']} | **{r['containers_left_behind']}** | {r['throughput_tasks_per_s']} tasks/s | {r['first_start_to_last_end_s']} s | {', '.join(f'{k}: {v}' for k, v in r['tasks_per_worker'].items())} |

("executions per worker" counts Celery executions in each worker's log; `small` also ran the DAG's
first task, which lists the items.) Per task (successful tries): duration p50 {r['task_duration_p50_s']} s, p95 {r['task_duration_p95_s']} s;
queued -> start p50 {r['queued_to_start_p50_s']} s, p95 {r['queued_to_start_p95_s']} s (the queue wait
includes waiting for a free worker slot: {2 * r['worker_concurrency']} slots for {r['tasks']} tasks).
Throughput is bounded by this 2-core machine: each task is a container whose Python imports Airflow
cold (see "Where the time goes" above); the worker slots, not the runtime, set the parallelism.
{END}
"""


def write(result: dict) -> None:
    write_section(BEGIN, END, markdown(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-queue", type=int, default=100, help="tasks on each of the two queues (default 100: 200 in all)")
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker concurrency of each worker")
    parser.add_argument("--deadline", type=float, default=1800, help="seconds to wait for the run")
    parser.add_argument("--write", action="store_true", help="write the result into docs/benchmarks.md")
    parser.add_argument("--render", type=Path, help="only write docs/benchmarks.md from a saved result (JSON)")
    args = parser.parse_args()
    if args.render:
        write(json.loads(args.render.read_text()))
        return
    result = run(args.per_queue, args.concurrency, args.deadline)
    print(json.dumps(result, indent=2))
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    if args.write:
        write(result)
    if result["containers_left_behind"] or result["lost"] or result["failed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
