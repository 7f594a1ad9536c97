"""Where a container child's start-up time goes: cold imports, measured in the image and on the worker.

    .venv/bin/python bench/profile.py [--image adr-test/base:latest] [--repeat 5] [--out FILE]

1. Wall time of a fresh interpreter that only starts (``pass``), that imports what the task child imports
   before its first log line (``airflow.sdk.execution_time.supervisor`` and ``.task_runner``), and what
   the parse child imports (``airflow.dag_processing.processor``): ``--repeat`` times each, in one
   container of the image and with the worker's own Python, medians.
2. ``python -X importtime`` of the task child's imports in the image: self time summed per top-level
   package, and the heaviest subtrees.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO  # noqa: E402

IMPORTS = {
    "interpreter_only": "pass",
    "task_child_imports": "import airflow.sdk.execution_time.supervisor, airflow.sdk.execution_time.task_runner",
    "parse_child_imports": "import airflow.dag_processing.processor",
}
TIMER = """
import statistics, subprocess, sys, time
python, repeat, statements = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for statement in statements:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([python, "-c", statement], check=True)
        runs.append(time.perf_counter() - t0)
    print(round(statistics.median(runs), 3))
"""
IMPORTTIME_RE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def docker_run(image: str, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "run", "--rm", "--init", "--network", "none", image, *command],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )


def wall_times(image: str, repeat: int) -> dict[str, dict[str, float]]:
    statements = list(IMPORTS.values())
    in_image = docker_run(image, "python", "-c", TIMER, "python", str(repeat), *statements).stdout.split()
    on_host = subprocess.run(
        [sys.executable, "-c", TIMER, sys.executable, str(repeat), *statements], capture_output=True, text=True, check=True
    ).stdout.split()
    return {
        name: {"image": float(in_image[i]), "worker": float(on_host[i])} for i, name in enumerate(IMPORTS)
    }


def _package(module: str) -> str:
    """Group modules by distribution; Airflow is split into the Task SDK and Airflow core."""
    if module == "airflow.sdk" or module.startswith("airflow.sdk."):
        return "airflow.sdk (task-sdk)"
    if module == "airflow" or module.startswith("airflow."):
        return "airflow (core)"
    return module.split(".")[0]


def import_profile(image: str) -> dict[str, Any]:
    stderr = docker_run(image, "python", "-X", "importtime", "-c", IMPORTS["task_child_imports"]).stderr
    rows = [(int(m[1]), int(m[2]), len(m[3]) // 2, m[4]) for m in map(IMPORTTIME_RE.match, stderr.splitlines()) if m]
    by_package: Counter[str] = Counter()
    for self_us, _, _, module in rows:
        by_package[_package(module)] += self_us
    total = sum(r[0] for r in rows)
    heavy = sorted((r for r in rows if r[1] >= 60_000), key=lambda r: -r[1])
    return {
        "modules": len(rows),
        "total_seconds": round(total / 1e6, 3),
        "self_seconds_by_package": [{"package": p, "seconds": round(us / 1e6, 3)} for p, us in by_package.most_common(10)],
        "heaviest_subtrees": [
            {"module": m, "depth": d, "cumulative_seconds": round(c / 1e6, 3), "self_seconds": round(s / 1e6, 3)}
            for s, c, d, m in heavy[:16]
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="adr-test/base:latest")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = {
        "image": args.image,
        "repeat": args.repeat,
        "statements": IMPORTS,
        "wall_seconds_p50": wall_times(args.image, args.repeat),
        "importtime": import_profile(args.image),
        "command": f".venv/bin/python {Path(__file__).relative_to(REPO)} --image {args.image} --repeat {args.repeat}",
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
