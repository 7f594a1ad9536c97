"""Soak: many short tries through the docker runtime (LocalExecutor, parallelism 4) and repeated parses.

    .venv/bin/python bench/soak.py [--tries 1000] [--parses 200] [--write]

A real deployment on this machine (PostgreSQL) whose tasks run in containers and whose DAG files are
parsed in containers (``airflow docker-runtime dag-processor``). After a warm-up run, it counts in the
worker processes (the LocalExecutor's, children of the scheduler) and in the DAG processor: open fds,
sockets among them and RSS; on the host: managed containers and run directories. Then one run of the
``soak`` DAG maps ``--tries`` tries while the DAG processor re-parses five probe files until ``--parses``
parses were seen (each parse moves a DAG's ``last_parsed_time``), and it counts again. Fails (exit 1) on
a lost try or anything leaked; ``--write`` puts the result in its section of docs/benchmarks.md.
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

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from airflow_docker_runtime.container.rundir import RUN_DIR_BASE  # noqa: E402
from bench.common import write_section  # noqa: E402
from tests.support.stack import AirflowStack, coordinator_entry, pg_database, wait_for  # noqa: E402

DAGS = REPO / "bench" / "soak_dags"
RESULT = REPO / "bench" / "soak.json"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
RSS_BUDGET_MB = 50
PROBES = [f"parse_probe_{i}" for i in range(1, 6)]


def _idle_pooled() -> list[dict]:
    """Idle warm-pool containers: the pool grows and shrinks with demand, so they are not leaks."""
    out = subprocess.run(["docker", "ps", "-q", "--filter", "label=airflow-docker-runtime.pooled=true", "--filter", "name=adr-pool-"],
                         capture_output=True, text=True, check=True).stdout.split()
    if not out:
        return []
    return json.loads(subprocess.run(["docker", "inspect", *out], capture_output=True, text=True).stdout or "[]")


def managed_containers() -> int:
    """Task containers on the daemon that are not idle in the warm pool."""
    out = subprocess.run(["docker", "ps", "-aq", "--no-trunc", "--filter", "label=airflow-docker-runtime.managed=true",
                          "--filter", "label=airflow-docker-runtime.kind=task"], capture_output=True, text=True, check=True)
    idle = {c["Id"] for c in _idle_pooled()}
    return len([c for c in out.stdout.split() if c not in idle])


def run_dirs() -> int:
    """Run directories, but those of idle warm-pool containers."""
    if not RUN_DIR_BASE.exists():
        return 0
    pooled = {m.get("Source") for c in _idle_pooled() for m in c.get("Mounts") or []}
    return sum(1 for entry in RUN_DIR_BASE.iterdir() if entry.name.startswith("run-") and str(entry) not in pooled)


def process_counts(pids: list[int]) -> dict:
    fds = sockets = rss = 0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            rss += proc.memory_info().rss
            for fd in os.listdir(f"/proc/{pid}/fd"):
                fds += 1
                try:
                    sockets += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
                except OSError:
                    pass
        except (psutil.NoSuchProcess, FileNotFoundError):
            continue
    return {"fds": fds, "sockets": sockets, "rss_mb": round(rss / 2**20, 1)}


def worker_pids(stack: AirflowStack) -> list[int]:
    """The LocalExecutor's worker processes: the scheduler's children running ``supervise``."""
    return sorted(p.pid for p in psutil.Process(stack.procs["scheduler"].pid).children())


def settled_counts(pids: list[int], samples: int = 20, interval: float = 0.25) -> dict:
    """The fewest fds and sockets seen over a few seconds: a DAG processor parses all the time, and a
    parse in flight holds its channels (about 8 descriptors) -- that is work, not a leak."""
    counts = [process_counts(pids) for _ in range(samples) if time.sleep(interval) is None]
    return min(counts, key=lambda c: (c["fds"], c["sockets"]))


def snapshot(stack: AirflowStack, workers: list[int]) -> dict:
    return {
        "workers": process_counts(workers),
        "dag_processor": settled_counts([stack.procs["dag-processor"].pid]),
        "containers": managed_containers(),
        "run_dirs": run_dirs(),
    }


def parse_times(stack: AirflowStack) -> dict[str, str]:
    return {d["dag_id"]: d.get("last_parsed_time") for d in stack.get("/dags", limit=100)["dags"] if d["dag_id"] in PROBES}


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_soak(stack: AirflowStack, tries: int, deadline: float) -> tuple[str, list[dict]]:
    run_id = stack.trigger("soak", conf={"tries": tries})
    try:
        state = stack.wait_for_run("soak", run_id, timeout=deadline)
    except TimeoutError:
        state = "timed out"
    return state, [ti for key, ti in stack.task_instances("soak", run_id).items() if key.startswith("tiny[")]


def run(tries: int, parses: int, deadline: float) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="adr-soak-"))
    config = {
        **coordinator_entry("default"),
        "docker_runtime": {"task_execution_runtime": "docker", "scheduler_dag_parsing_runtime": "docker",
                           "container_repository": "adr-test/base"},
        "core": {"parallelism": "4", "max_active_tasks_per_dag": "4", "max_map_length": str(max(1024, tries))},
        "dag_processor": {"min_file_process_interval": "1", "refresh_interval": "5"},
    }
    stack = AirflowStack(tmp / "home", DAGS, db_url=pg_database("airflow_soak"), config=config,
                         dag_processor=("docker-runtime", "dag-processor"))
    try:
        with stack:
            stack.wait_for_dags(["soak", *PROBES])
            warm_state, _ = run_soak(stack, 20, deadline)  # imports, pool and fork servers settle first
            workers = worker_pids(stack)
            before = snapshot(stack, workers)
            seen, last = 0, parse_times(stack)
            triggered = time.time()
            run_id = stack.trigger("soak", conf={"tries": tries})
            state = None
            end = time.monotonic() + deadline
            while time.monotonic() < end and (state is None or seen < parses):
                now = parse_times(stack)
                seen += sum(1 for dag_id, when in now.items() if when and when != last.get(dag_id))
                last = now
                if state is None and (s := stack.run_state("soak", run_id)) in ("success", "failed"):
                    state = s
                time.sleep(0.5)
            finished = time.time()
            tis = [ti for key, ti in stack.task_instances("soak", run_id).items() if key.startswith("tiny[")]
            try:  # removal follows each exit within moments; idle warm-pool containers count on both sides
                wait_for(lambda: managed_containers() <= before["containers"] and run_dirs() <= before["run_dirs"],
                         timeout=30, interval=0.5, what="containers and run directories to go")
            except TimeoutError:
                pass  # reported as leaked below
            after = snapshot(stack, workers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    states = [ti["state"] for ti in tis]
    latencies = [parse_time(ti["end_date"]) - parse_time(ti["queued_when"]) for ti in tis
                 if ti["state"] == "success" and ti["end_date"] and ti["queued_when"]]
    leaks = {
        "containers": after["containers"] - before["containers"],
        "run_dirs": after["run_dirs"] - before["run_dirs"],
        "worker_fds": after["workers"]["fds"] - before["workers"]["fds"],
        "worker_sockets": after["workers"]["sockets"] - before["workers"]["sockets"],
        "dag_processor_fds": after["dag_processor"]["fds"] - before["dag_processor"]["fds"],
        "dag_processor_sockets": after["dag_processor"]["sockets"] - before["dag_processor"]["sockets"],
    }
    return {
        "command": f".venv/bin/python bench/soak.py --tries {tries} --parses {parses}",
        "date": datetime.now().strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}",
        "warm_up": warm_state, "run_state": state or "timed out",
        "tries": len(tis), "succeeded": states.count("success"), "failed": states.count("failed"),
        "lost": sum(s not in ("success", "failed") for s in states) + (tries - len(tis)),
        "parses_seen": seen, "worker_processes": len(workers),
        "before": before, "after": after, "leaks": leaks,
        "worker_rss_growth_mb": round(after["workers"]["rss_mb"] - before["workers"]["rss_mb"], 1),
        "queued_to_end_p50_s": round(statistics.median(latencies), 2) if latencies else None,
        "queued_to_end_p99_s": round(percentile(latencies, 0.99), 2) if latencies else None,
        "trigger_to_run_end_s": round(finished - triggered, 1),
    }


def failed(r: dict) -> list[str]:
    problems = [f"{k} leaked: {v}" for k, v in r["leaks"].items() if v > 0]
    if r["lost"] or r["failed"]:
        problems.append(f"{r['lost']} lost, {r['failed']} failed")
    if r["worker_rss_growth_mb"] > RSS_BUDGET_MB:
        problems.append(f"worker RSS grew {r['worker_rss_growth_mb']} MB > {RSS_BUDGET_MB} MB")
    return problems


def markdown(r: dict) -> str:
    b, a = r["before"], r["after"]
    return f"""{BEGIN}
## Soak (issue "Reliability under faults and load")

Command: `{r['command']}` (LocalExecutor, parallelism 4, PostgreSQL; tasks and parsing in containers).
Machine: {r['machine']}. Date: {r['date']}. Counted after a 20-try warm-up and again after the run
(idle warm-pool containers and the parsing fork server, with their run directories, count on both sides).

| tries | succeeded | failed | lost | parses seen | queued -> end p50 | p99 | worker RSS growth |
|---|---|---|---|---|---|---|---|
| {r['tries']} | {r['succeeded']} | {r['failed']} | {r['lost']} | {r['parses_seen']} | {r['queued_to_end_p50_s']} s | {r['queued_to_end_p99_s']} s | {r['worker_rss_growth_mb']} MB |

| | before | after |
|---|---|---|
| task containers on the daemon | {b['containers']} | {a['containers']} |
| run directories | {b['run_dirs']} | {a['run_dirs']} |
| worker processes ({r['worker_processes']}): fds / sockets / RSS | {b['workers']['fds']} / {b['workers']['sockets']} / {b['workers']['rss_mb']} MB | {a['workers']['fds']} / {a['workers']['sockets']} / {a['workers']['rss_mb']} MB |
| DAG processor: fds / sockets / RSS | {b['dag_processor']['fds']} / {b['dag_processor']['sockets']} / {b['dag_processor']['rss_mb']} MB | {a['dag_processor']['fds']} / {a['dag_processor']['sockets']} / {a['dag_processor']['rss_mb']} MB |
{END}
"""


def write(result: dict) -> None:
    write_section(BEGIN, END, markdown(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", type=int, default=1000)
    parser.add_argument("--parses", type=int, default=200)
    parser.add_argument("--deadline", type=float, default=3600, help="seconds to wait for the run")
    parser.add_argument("--write", action="store_true", help="write the result into docs/benchmarks.md")
    parser.add_argument("--render", type=Path, help="only write docs/benchmarks.md from a saved result (JSON)")
    args = parser.parse_args()
    if args.render:
        write(json.loads(args.render.read_text()))
        return
    result = run(args.tries, args.parses, args.deadline)
    print(json.dumps(result, indent=2))
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    if args.write:
        write(result)
    if problems := failed(result):
        raise SystemExit("soak failed: " + "; ".join(problems))


if __name__ == "__main__":
    main()
