"""What every benchmark part shares: statistics, machine facts, the DAG-file generator and the stack's config."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # bench/ scripts run as files; tests.support and bench.* are imported by name
    sys.path.insert(0, str(REPO))

IMAGES = ("adr-test/base:latest", "adr-test/dep-v1:latest", "adr-test/dep-v2:latest")


# -- statistics ------------------------------------------------------------------------------------------
def p95(values: Iterable[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def summary(values: list[float], digits: int = 3) -> dict[str, Any]:
    """``{"n", "p50", "p95"}`` of ``values`` (seconds or bytes), rounded."""
    if not values:
        return {"n": 0, "p50": None, "p95": None}
    return {"n": len(values), "p50": round(statistics.median(values), digits), "p95": round(p95(values), digits)}


def ratio(docker: float | None, native: float | None) -> float | None:
    """docker / native, or None when either is missing or native is zero."""
    if docker is None or not native:
        return None
    return round(docker / native, 2)


def parse_time(text: str) -> float:
    """An ISO-8601 timestamp (Airflow's API and its JSON log lines) as POSIX seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- machine -------------------------------------------------------------------------------------------
def _run(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_facts() -> dict[str, Any]:
    """What the numbers were measured on: CPU, memory, OS, Docker, Airflow, the commit."""
    cpu_model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kib = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
    os_name = ""
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = line.split("=", 1)[1].strip('"')
    docker = json.loads(_run("docker", "info", "--format", "{{json .}}") or "{}")
    import airflow

    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "os": os_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "airflow": airflow.__version__,
        "docker_server": docker.get("ServerVersion", ""),
        "docker_storage_driver": docker.get("Driver", ""),
        "cgroup": f"v{docker.get('CgroupVersion', '?')} ({docker.get('CgroupDriver', '?')})",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def tree_facts() -> dict[str, Any]:
    """The commit measured (``git rev-parse HEAD``) and whether ``src/`` had uncommitted changes
    (``git status --porcelain src/``, untracked files included); the same for ``bench/``."""
    def porcelain(path: str) -> list[str]:  # not _run: its strip() would eat the first line's status column
        out = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", path], capture_output=True, text=True)
        return [line for line in out.stdout.splitlines() if line.strip()]

    src = porcelain("src/")
    bench = porcelain("bench/")
    bench = [line for line in bench if not line.endswith("bench/results.json")]  # the run rewrites it
    # The package the Airflow components will import (PYTHONPATH can point elsewhere than this tree's src/).
    package = _run(sys.executable, "-c", "import airflow_docker_runtime as p; print(p.__file__)")
    return {
        "commit": _run("git", "-C", str(REPO), "rev-parse", "HEAD"),
        "package_imported_from": package,
        "package_from_this_tree": package.startswith(str(REPO / "src") + os.sep),
        "src_uncommitted_changes": bool(src),
        "src_status": src,
        "bench_uncommitted_changes": bool(bench),
        "bench_status": bench,
    }


# -- DAG files -----------------------------------------------------------------------------------------
def write_sidecar(dag_file: Path, image: str) -> None:
    """The AIP-46 sidecar that picks ``image`` for ``dag_file``."""
    Path(f"{dag_file}.metadata.yaml").write_text(f"docker_runtime:\n  image: {image}\n")


def write_section(begin: str, end: str, section: str, page: Path = REPO / "docs" / "benchmarks.md") -> None:
    """Put ``section`` (which starts with ``begin`` and ends with ``end``) into ``page``: in place of the
    block between those markers, or at the end. ``bench/run.py`` keeps such blocks when it re-renders."""
    text = page.read_text() if page.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + section.rstrip("\n") + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    page.write_text(text)
