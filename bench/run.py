"""``make bench``: run every benchmark part, write ``bench/results.json`` and ``docs/benchmarks.md``.

    .venv/bin/python bench/run.py [--parts tasks,parse,profile] [--tasks 30] [--sleep-tasks 16] [--task-rounds 2]
                                  [--task-runtimes native,docker,docker_cold,docker_fork] [--hold 4]
                                  [--parse-files 60] [--parse-rounds 3] [--parse-processes 2] [--render-only]

Each part runs as its own process (its own AIRFLOW_HOME and configuration) and hands back JSON; this
script adds the machine facts, the commit measured and whether ``src/`` had uncommitted changes, issue 10's
targets (``targets``) and the command, then renders the page. Exit status 1 when a target could not be
measured (a queue whose warm-up failed) or a managed container was left behind.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import report  # noqa: E402
from bench.common import REPO, machine_facts, tree_facts  # noqa: E402

RESULTS = REPO / "bench" / "results.json"
PAGE = REPO / "docs" / "benchmarks.md"
MANAGED = "label=airflow-docker-runtime.managed"


def run_part(name: str, argv: list[str]) -> dict:
    with tempfile.NamedTemporaryFile(prefix=f"adr-bench-{name}-", suffix=".json") as out:
        command = [sys.executable, str(REPO / "bench" / f"{name}.py"), *argv, "--out", out.name]
        print(f"bench: {name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
        started = time.monotonic()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        print(f"bench: {name} done in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
        return json.loads(Path(out.name).read_text())


def write_page(results: dict) -> None:
    """Render the page, keeping sections other scripts maintain between ``<!-- name:begin/end -->`` markers
    (``bench/celery_load.py`` writes one); they go after the generated part."""
    old = PAGE.read_text() if PAGE.exists() else ""
    kept: dict[str, str] = {}  # one block per name, markers on lines of their own
    for m in re.finditer(r"^<!-- ([\w-]+):begin -->$.*?^<!-- \1:end -->$", old, re.S | re.M):
        kept.setdefault(m.group(1), m.group(0))
    PAGE.write_text(report.render(results) + "".join(f"\n{block}\n" for block in kept.values()))


def leftover_containers() -> list[str]:
    return subprocess.run(["docker", "ps", "-aq", "--filter", MANAGED], capture_output=True, text=True, check=True).stdout.split()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="tasks,parse,profile", help="comma-separated: tasks, parse, profile")
    parser.add_argument("--tasks", type=int, default=30, help="no-op tasks per DAG run (sequential, 4 at a time)")
    parser.add_argument("--sleep-tasks", type=int, default=16, help="tasks per DAG run of 2-second tasks, 4 at a time")
    parser.add_argument("--task-rounds", type=int, default=2, help="DAG runs per runtime and shape")
    parser.add_argument(
        "--task-runtimes", default="native,docker,docker_cold,docker_fork", help="queues measured (native is required)"
    )
    parser.add_argument("--hold", type=int, default=4, help="tasks running at once for the footprint")
    parser.add_argument("--parse-files", type=int, default=60)
    parser.add_argument("--parse-rounds", type=int, default=3, help="full passes per runtime")
    parser.add_argument("--parse-processes", type=int, default=2)
    parser.add_argument("--profile-repeat", type=int, default=5)
    parser.add_argument("--render-only", action="store_true", help="only re-render docs/benchmarks.md from bench/results.json")
    args = parser.parse_args()

    if args.render_only:
        write_page(json.loads(RESULTS.read_text()))
        return 0

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    began = time.monotonic()
    results: dict = {
        "command": "flock /tmp/adr-e2e.lock make bench" + (f" BENCH_ARGS=\"{' '.join(sys.argv[1:])}\"" if sys.argv[1:] else ""),
        "invocation": " ".join([".venv/bin/python bench/run.py", *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_facts(),
        "tree": tree_facts(),
    }
    for part in ("src", "bench"):
        if results["tree"][f"{part}_uncommitted_changes"]:
            print(
                f"bench: warning: {part}/ has uncommitted changes ({len(results['tree'][f'{part}_status'])} paths); "
                "the page will say so: publish figures from a committed tree",
                file=sys.stderr,
            )
    if not results["tree"]["package_from_this_tree"]:
        print(f"bench: warning: airflow_docker_runtime is imported from {results['tree']['package_imported_from']}", file=sys.stderr)
    if leftover := leftover_containers():
        print(f"bench: warning: {len(leftover)} managed containers exist before the run", file=sys.stderr)
    if "tasks" in parts:
        results["tasks"] = run_part(
            "tasks",
            [
                "--tasks", str(args.tasks),
                "--sleep-tasks", str(args.sleep_tasks),
                "--rounds", str(args.task_rounds),
                "--hold", str(args.hold),
                "--runtimes", args.task_runtimes,
            ],
        )  # fmt: skip
    if "parse" in parts:
        results["parse"] = run_part(
            "parse",
            ["--files", str(args.parse_files), "--rounds", str(args.parse_rounds), "--processes", str(args.parse_processes)],
        )
    if "profile" in parts:
        results["profile"] = run_part("profile", ["--repeat", str(args.profile_repeat)])
    results["targets"] = report.targets(results)
    results["duration_minutes"] = round((time.monotonic() - began) / 60, 1)
    results["leftover_containers"] = len(leftover_containers())

    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    write_page(results)
    print(json.dumps(results["targets"], indent=2))
    status = 0
    if results["leftover_containers"]:
        print(f"bench: {results['leftover_containers']} managed containers left behind", file=sys.stderr)
        status = 1
    if unavailable := results.get("tasks", {}).get("unavailable"):
        print(f"bench: queues not measured (warm-up failed): {unavailable}", file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
