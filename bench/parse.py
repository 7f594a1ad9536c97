"""Parse speed, native against docker: seconds per file and a full pass over a DAG folder, on one machine.

    .venv/bin/python bench/parse.py [--rounds 5] [--folder examples/dags]

Each round parses every file of the folder once with Airflow's own parse child (forked on the host) and
once in its container (`airflow docker-runtime parse` machinery); prints medians, p95 and ratios as JSON
and Markdown. Files whose imports only exist in their image are parsed natively too: their import error
is still a full parse.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--folder", type=Path, default=REPO / "examples" / "dags")
    args = parser.parse_args()
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="adr-bench-"))
    from airflow_docker_runtime.parsing.command import parse_file

    files = sorted(p for p in args.folder.glob("*.py"))
    per_file: dict[str, list[float]] = {"native": [], "docker": []}
    passes: dict[str, list[float]] = {"native": [], "docker": []}
    for _ in range(args.rounds):
        for mode in ("native", "docker"):
            started = time.monotonic()
            for path in files:
                _, seconds, _ = parse_file(path, 300, in_container=mode == "docker")
                per_file[mode].append(seconds)
            passes[mode].append(time.monotonic() - started)
    result = {
        "command": f".venv/bin/python bench/parse.py --rounds {args.rounds} --folder {args.folder.relative_to(REPO)}",
        "machine": f"{platform.node()} {os.cpu_count()} cores, {platform.platform()}",
        "files": len(files),
        "rounds": args.rounds,
    }
    for mode in ("native", "docker"):
        result[mode] = {
            "seconds_per_file_p50": round(statistics.median(per_file[mode]), 3),
            "seconds_per_file_p95": round(p95(per_file[mode]), 3),
            "full_pass_seconds_p50": round(statistics.median(passes[mode]), 3),
            "files_per_second": round(len(files) / statistics.median(passes[mode]), 2),
        }
    result["throughput_ratio_docker_over_native"] = round(
        result["docker"]["files_per_second"] / result["native"]["files_per_second"], 3
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
