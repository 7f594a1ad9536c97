"""``make bench``: run every benchmark part, write ``bench/results.json`` and ``docs/benchmarks.md``.

    .venv/bin/python bench/run.py [--parts tasks,parse,profile] [--tasks 30] [--task-rounds 2] [--hold 4]
                                  [--parse-files 60] [--parse-rounds 3] [--parse-processes 2] [--render-only]

Each part runs as its own process (its own AIRFLOW_HOME and configuration) and hands back JSON; this
script adds the machine facts, the distance to the issue's targets and the command, then renders the page.
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
from bench.common import REPO, machine_facts  # noqa: E402

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
    kept = [m.group(0) for m in re.finditer(r"<!-- ([\w-]+):begin -->.*?<!-- \1:end -->", old, re.S)]
    PAGE.write_text(report.render(results) + "".join(f"\n{block}\n" for block in kept))


def leftover_containers() -> list[str]:
    return subprocess.run(["docker", "ps", "-aq", "--filter", MANAGED], capture_output=True, text=True, check=True).stdout.split()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="tasks,parse,profile", help="comma-separated: tasks, parse, profile")
    parser.add_argument("--tasks", type=int, default=30, help="no-op tasks per DAG run")
    parser.add_argument("--task-rounds", type=int, default=2, help="DAG runs per runtime and shape (sequential, parallel 4)")
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
        "command": "flock /tmp/adr-heavy.lock make bench",
        "invocation": " ".join([".venv/bin/python bench/run.py", *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_facts(),
    }
    if leftover := leftover_containers():
        print(f"bench: warning: {len(leftover)} managed containers exist before the run", file=sys.stderr)
    if "tasks" in parts:
        results["tasks"] = run_part(
            "tasks", ["--tasks", str(args.tasks), "--rounds", str(args.task_rounds), "--hold", str(args.hold)]
        )
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
    if results["leftover_containers"]:
        print(f"bench: {results['leftover_containers']} managed containers left behind", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
