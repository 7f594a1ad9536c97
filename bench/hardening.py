"""What the hardened profile costs a container: the task runner's import under the default create arguments
against Docker's defaults, interleaved, on one machine.

    .venv/bin/python bench/hardening.py [--pairs 10] [--write]

Each pair starts two containers of ``adr-test/base:latest`` that import the task runner and the DAG bag and
exit: one with the create arguments the runtime sends by default (``container/docker_args.create_kwargs``:
no capabilities, no-new-privileges, uid 50000, read-only root with a ``/tmp`` tmpfs, no network, 1g / 1 CPU
/ 512 PIDs), one with only the image, command and environment. The order alternates. ``--write`` puts the
medians in their own section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write_section  # noqa: E402
from airflow_docker_runtime.container.docker_args import LaunchRequest, create_kwargs  # noqa: E402
from airflow_docker_runtime.spec import DEFAULTS, RuntimeSpec  # noqa: E402

IMAGE = "adr-test/base:latest"
PYTHON = "/opt/airflow/venv/bin/python"
IMPORT = "import airflow.sdk.execution_time.task_runner, airflow.dag_processing.dagbag"
BEGIN, END = "<!-- hardening:begin -->", "<!-- hardening:end -->"


def hardened_kwargs() -> dict:
    spec = RuntimeSpec(**{k: v for k, v in DEFAULTS.items() if k in RuntimeSpec.model_fields}, image=IMAGE)
    request = LaunchRequest(kind="task", name="unused", run_dir=Path("/nonexistent"), bootstrap_dir=Path("/nonexistent"))
    kwargs = create_kwargs(spec, request, {})
    kwargs.pop("name")
    kwargs["mounts"] = [m for m in kwargs.get("mounts", []) if not str(m.get("Target", "")).startswith(("/run/airflow", "/opt/airflow-docker"))]
    kwargs["command"] = [PYTHON, "-c", IMPORT]
    kwargs["labels"] = {"airflow-docker-runtime.bench": "hardening"}
    return kwargs


def plain_kwargs(hardened: dict) -> dict:
    return {"image": IMAGE, "command": hardened["command"], "environment": hardened["environment"], "init": True,
            "labels": {"airflow-docker-runtime.bench": "hardening"}}


def one(client: docker.DockerClient, kwargs: dict) -> float:
    started = time.monotonic()
    container = client.containers.create(**{k: v for k, v in kwargs.items() if k != "detach"})
    try:
        container.start()
        status = container.wait(timeout=120)["StatusCode"]
        if status != 0:
            raise RuntimeError(f"the import failed in the container: {container.logs(tail=20).decode(errors='replace')}")
        return time.monotonic() - started
    finally:
        container.remove(force=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    client = docker.from_env()
    hardened = hardened_kwargs()
    plain = plain_kwargs(hardened)
    samples: dict[str, list[float]] = {"hardened": [], "plain": []}
    for i in range(args.pairs):
        order = ("hardened", "plain") if i % 2 == 0 else ("plain", "hardened")
        for name in order:
            samples[name].append(one(client, hardened if name == "hardened" else plain))
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    result = {
        name: {"n": len(v), "p50": round(statistics.median(v), 3), "min": round(min(v), 3), "max": round(max(v), 3)}
        for name, v in samples.items()
    }
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result["load_average_after"] = load
    print(json.dumps(result, indent=2))
    if args.write:
        h, p = result["hardened"], result["plain"]
        section = "\n".join([
            BEGIN,
            "## The hardened profile's cost (issue 11)",
            "",
            f"`flock /tmp/adr-e2e.lock .venv/bin/python bench/hardening.py --write`, {result['date']}, {args.pairs} interleaved "
            f"pairs, load average after the run {load}. Start, import of the task runner and the DAG bag, exit and "
            "removal of a container, seconds:",
            "",
            "| create arguments | p50 | min | max |",
            "|---|---|---|---|",
            f"| default (hardened: no capabilities, no-new-privileges, uid 50000, read-only root + tmpfs, no network, 1g / 1 CPU / 512 PIDs) | {h['p50']:.3f} | {h['min']:.3f} | {h['max']:.3f} |",
            f"| Docker's defaults (root, default capabilities, writable root, bridge, no limits) | {p['p50']:.3f} | {p['min']:.3f} | {p['max']:.3f} |",
            "",
            f"Difference of the medians: {h['p50'] - p['p50']:+.3f} s ({h['p50'] / p['p50']:.2f}x); of the minimums: "
            f"{h['min'] - p['min']:+.3f} s. The import is single-threaded, so the 1-CPU limit does not slow it on an idle "
            "machine; on a busy one the CPU quota can add waiting that the plain container does not have.",
            END,
        ])
        write_section(BEGIN, END, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
