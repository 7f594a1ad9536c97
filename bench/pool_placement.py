"""Where should the warm pool live? Measures how a LocalExecutor spreads sequential tries over its worker processes.

    .venv/bin/python bench/pool_placement.py [--tasks 30] [--parallelism 4 16]

For each ``[core] parallelism`` it runs a DAG of ``--tasks`` sequential no-op tasks on the native runtime
and reads each try's worker process (the task returns its parent's PID: the supervisor, i.e. the
LocalExecutor worker process) and its timestamps. From those it computes the hit
rate a pool *per worker process* would have -- a try hits only if the same process had a container ready,
i.e. its previous try ended at least ``--refill`` seconds earlier (a pooled container's start-up and
import, measured at ~1.3 s on this machine when idle) -- against a pool *per host* of the same total size,
which hits whenever any container is ready. It prints JSON; docs/adr/0009-warm-pool.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import parse_time  # noqa: E402
from tests.support.stack import AirflowStack, pg_database  # noqa: E402

DAG = '''
import pendulum
from airflow.sdk import dag, task

@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, max_active_tasks=1)
def placement():
    previous = None
    for i in range({tasks}):
        @task(task_id=f"t{{i}}")
        def noop():
            import os
            return os.getppid()  # the supervisor: the LocalExecutor worker process that ran this try
        current = noop()
        if previous is not None:
            previous >> current
        previous = current

placement()
'''


def measure(parallelism: int, tasks: int, refill: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="adr-placement-") as tmp:
        dags = Path(tmp) / "dags"
        dags.mkdir()
        (dags / "placement.py").write_text(DAG.format(tasks=tasks))
        config = {"core": {"parallelism": str(parallelism)}}
        with AirflowStack(Path(tmp) / "home", dags, db_url=pg_database("airflow_bench"), config=config) as stack:
            stack.wait_for_dags(["placement"])
            run_id = stack.trigger("placement")
            stack.wait_for_run("placement", run_id, timeout=600)
            tis = sorted(stack.task_instances("placement", run_id).values(), key=lambda t: t["queued_when"])
            for ti in tis:
                ti["worker"] = stack.xcom("placement", run_id, ti["task_id"])
    # A pool per worker process, one container each: a try hits if its process claimed its container at
    # least `refill` seconds before (the replacement had time to start and import).
    last_claim: dict[int, float] = {}
    per_process_hits = 0
    queued = [parse_time(ti["queued_when"]) for ti in tis]
    for ti, when in zip(tis, queued):
        if ti["worker"] in last_claim and when - last_claim[ti["worker"]] >= refill:
            per_process_hits += 1
        last_claim[ti["worker"]] = when
    # One pool per host with `size` containers: a try hits if the claim `size` tries earlier was at least
    # `refill` seconds before (its replacement is ready by now).
    def host_hits(size: int) -> int:
        return sum(i >= size and queued[i] - queued[i - size] >= refill for i in range(len(queued)))

    return {
        "parallelism": parallelism,
        "tries": len(tis),
        "worker_processes_used": len({t["worker"] for t in tis}),
        "median_seconds_between_tries": round(sorted(b - a for a, b in zip(queued, queued[1:]))[len(queued) // 2 - 1], 3),
        "per_process_pool_of_1_hit_rate": round(per_process_hits / len(tis), 2),
        "per_process_pool_idle_containers": parallelism,
        "per_host_pool_of_1_hit_rate": round(host_hits(1) / len(tis), 2),
        "per_host_pool_of_2_hit_rate": round(host_hits(2) / len(tis), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--parallelism", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--refill", type=float, default=1.3)
    args = parser.parse_args()
    print(json.dumps([measure(p, args.tasks, args.refill) for p in args.parallelism], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
