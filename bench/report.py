"""Render ``bench/results.json`` as ``docs/benchmarks.md``: every number in the page comes from that file."""

from __future__ import annotations

from typing import Any

SLEEP_SECONDS = 2.0

# Issue 10 ("Warm starts"): key in ``targets`` -> (comparison, limit, unit). "report" has no limit.
TARGETS: dict[str, tuple[str, float | None, str]] = {
    "task_seq_noop_docker_minus_native_s": ("<=", 0.05, "s"),
    "task_par4_sleep2_docker_minus_native_s": ("<=", 0.05, "s"),
    "task_par4_noop_forkserver_throughput_ratio": (">=", 0.8, "x"),
    "task_seq_noop_cold_docker_minus_native_s": ("<=", 1.0, "s"),
    "parse_default_throughput_ratio": (">=", 0.9, "x"),
    "pool_idle_container_pss_mib": ("report", None, "MiB"),
}

RUNTIME_LABELS = {
    "native": "native",
    "docker": "docker, default (warm pool)",
    "docker_cold": "docker, pool off (`warm_pool_size: 0`)",
    "docker_fork": "docker, task fork server (`fork_server: true`)",
}
PARSE_LABELS = {
    "native": "native processor",
    "docker": "docker-parsing processor, default (fork server)",
    "docker-per-file": "docker-parsing processor, `fork_server = False` (one container per file)",
}


# -- targets ---------------------------------------------------------------------------------------------
def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _minus_native_p50(results: dict[str, Any], shape: str, runtime: str, metric: str = "queued_to_end") -> float | None:
    return _get(results, "tasks", "start_overhead", shape, "vs_native", runtime, "minus_p50", metric)


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """Issue 10's targets: for each key, the measured value, the limit and whether it is met (None when not
    measured or report-only), plus how far off it is."""
    values = {
        "task_seq_noop_docker_minus_native_s": _minus_native_p50(results, "seq", "docker"),
        # median(queued -> end) - 2 s for docker, minus the same for native: the 2 s cancel out.
        "task_par4_sleep2_docker_minus_native_s": _minus_native_p50(results, "par4_sleep2", "docker"),
        "task_par4_noop_forkserver_throughput_ratio": _get(
            results, "tasks", "start_overhead", "par4", "vs_native", "docker_fork", "ratio_p50", "tries_per_second"
        ),
        "task_seq_noop_cold_docker_minus_native_s": _minus_native_p50(results, "seq", "docker_cold"),
        "parse_default_throughput_ratio": _get(results, "parse", "vs_native", "docker", "throughput"),
        "pool_idle_container_pss_mib": _get(results, "tasks", "pool_idle", "pss_mib"),
    }
    out: dict[str, Any] = {}
    for key, (op, limit, unit) in TARGETS.items():
        value = values[key]
        entry: dict[str, Any] = {"value": value, "target": "report" if op == "report" else f"{op} {limit:g}", "unit": unit}
        if value is None or limit is None:
            entry["met"] = None
            entry["distance"] = None
        elif op == "<=":
            entry["met"] = value <= limit
            entry["distance"] = round(value - limit, 3)  # > 0: over the limit by this much
        else:
            entry["met"] = value >= limit
            entry["distance"] = round(limit / value, 2) if value else None  # > 1: needs this factor more
        out[key] = entry
    return out


# -- formatting --------------------------------------------------------------------------------------------
def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _x(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _d(value: float | None) -> str:
    return "—" if value is None else f"{value:+.3f}"


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _p(stats: dict[str, Any] | None, fmt=_s) -> str:
    """``p50 (p95)``."""
    if not stats or stats.get("p50") is None:
        return "—"
    return f"{fmt(stats['p50'])} ({fmt(stats['p95'])})"


def _distance(entry: dict[str, Any]) -> str:
    if entry["target"] == "report":
        return "reported"
    if entry["met"] is None:
        return "not measured"
    if entry["met"]:
        return "met"
    if entry["unit"] == "x":
        return f"not met: needs {entry['distance']:.2f}x more"
    return f"not met: {entry['distance']:.3f} s over"


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    tree = results.get("tree", {})
    commit = tree.get("commit") or m.get("commit", "?")
    dirty = [f"`{part}/` ({len(tree.get(f'{part}_status', []))} paths)" for part in ("src", "bench") if tree.get(f"{part}_uncommitted_changes")]
    if dirty:
        tree_line = (
            f"commit `{commit}` **with uncommitted changes under {' and '.join(dirty)}**: these figures do not "
            "describe a committed tree"
        )
    else:
        tree_line = f"commit `{commit}`, `src/` and `bench/` clean (`git status --porcelain src/` empty)"
    if tree.get("package_from_this_tree") is False:
        tree_line += f"; **but the package measured was imported from `{tree.get('package_imported_from')}`**, not this tree's `src/`"
    lines = [
        "# Benchmarks",
        "",
        "The cost of a container, measured against the native runtime: the same DAGs, the same executor",
        "(LocalExecutor, PostgreSQL) and the same machine, in one run, for each docker runtime configuration",
        "(warm pool, pool off, task fork server; for parsing the fork server and one container per file). This",
        "page is generated by `bench/run.py` from [`bench/results.json`](../bench/results.json), which holds every",
        "sample summary behind it; the prose lives in `bench/report.py`.",
        "",
        f"- **Measured tree:** {tree_line}.",
        f"- **Command:** `{results['command']}` (that is `{results['invocation']}`), "
        f"{results['date']}, {results['duration_minutes']} minutes.",
        f"- **Machine:** {m['cpus']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, {m['os']}, kernel {m['kernel']}; "
        f"Docker {m['docker_server']} ({m['docker_storage_driver']}, cgroup {m['cgroup']}); Python {m['python']}, "
        f"Airflow {m['airflow']}; load average at start {', '.join(str(x) for x in m['load_average_at_start'])}.",
        "- **How to read:** the machine is shared and noisy, so every number is a median (p50) or a nearest-rank",
        "  95th percentile (p95) over the samples stated; ratios and differences are taken between the medians of",
        "  runtimes measured in the same run, interleaved. Times are seconds.",
        "",
    ]
    lines += _headline(results)
    if "tasks" in results:
        lines += _start_overhead(results["tasks"])
    if "parse" in results:
        lines += _parse(results["parse"])
    if "tasks" in results:
        lines += _footprint(results["tasks"])
    if "profile" in results:
        lines += _profile(results)
    lines += _running()
    return "\n".join(lines) + "\n"


# -- headline ----------------------------------------------------------------------------------------------
def _headline(results: dict[str, Any]) -> list[str]:
    t = results["targets"]
    so = _get(results, "tasks", "start_overhead") or {}
    pr = results.get("parse") or {}

    def q2e(shape: str, runtime: str, minus: float = 0.0) -> str:
        v = _get(so, shape, runtime, "queued_to_end", "p50")
        return _s(None if v is None else v - minus)

    def tps(runtime: str) -> str:
        v = _get(so, "par4", runtime, "tries_per_second", "p50")
        return "—" if v is None else f"{v:.2f}/s"

    def fps(runtime: str) -> str:
        v = _get(pr, runtime, "files_per_second")
        return "—" if v is None else f"{v:.2f}/s"

    def hit(shape: str, runtime: str) -> str:
        rate = _get(so, shape, runtime, "pool_hit_rate")
        return "" if rate is None else f"; pool hits {rate:.0%}"

    def value(key: str) -> str:
        e = t[key]
        if e["unit"] == "s":
            return _d(e["value"]) + " s" if e["value"] is not None else "—"
        if e["unit"] == "x":
            return _x(e["value"])
        return "—" if e["value"] is None else f"{e['value']:.1f} MiB"

    def target(key: str) -> str:
        op, limit, unit = TARGETS[key]
        if op == "report":
            return "report"
        bound = f"{op.replace('<=', '≤').replace('>=', '≥')} {'+' if unit == 's' else ''}{limit:.2f}{' s' if unit == 's' else 'x'}"
        return bound + (" (report)" if key == "task_seq_noop_cold_docker_minus_native_s" else "")

    pool = _get(results, "tasks", "pool_idle") or {}
    rows = [
        (
            "task_seq_noop_docker_minus_native_s",
            f"no-op try, sequential, queued → end, default config{hit('seq', 'docker')}",
            q2e("seq", "native"),
            q2e("seq", "docker"),
        ),
        (
            "task_par4_sleep2_docker_minus_native_s",
            f"try that sleeps 2 s, 4 at a time, queued → end − 2 s, default config{hit('par4_sleep2', 'docker')}",
            q2e("par4_sleep2", "native", SLEEP_SECONDS),
            q2e("par4_sleep2", "docker", SLEEP_SECONDS),
        ),
        (
            "task_par4_noop_forkserver_throughput_ratio",
            "no-op, 4 at a time, tries per second (first queued → last end), task fork server",
            tps("native"),
            tps("docker_fork"),
        ),
        (
            "task_seq_noop_cold_docker_minus_native_s",
            f"no-op try, sequential, queued → end, pool off (cold container){hit('seq', 'docker_cold')}",
            q2e("seq", "native"),
            q2e("seq", "docker_cold"),
        ),
        (
            "parse_default_throughput_ratio",
            f"parse throughput, {pr.get('files', '?')} files, 3 images, default parsing config",
            fps("native"),
            fps("docker"),
        ),
        (
            "pool_idle_container_pss_mib",
            f"one idle pooled container, PSS of its processes + its containerd shim ({pool.get('containers', 0)} measured)",
            "—",
            "—" if pool.get("pss_mib") is None else f"{pool['pss_mib']:.1f}",
        ),
    ]
    lines = [
        "## Headline: issue 10 targets",
        "",
        "| `targets` key | measure | native p50 | docker p50 | value | target | distance |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, label, native, docker in rows:
        lines.append(f"| `{key}` | {label} | {native} | {docker} | {value(key)} | {target(key)} | {_distance(t[key])} |")
    met = [k for k, e in t.items() if e["met"] is True]
    missed = [k for k, e in t.items() if e["met"] is False]
    absent = [k for k, e in t.items() if e["met"] is None and e["target"] != "report"]
    summary = f"{len(met)} of {len(met) + len(missed) + len(absent)} targets met"
    if missed:
        summary += "; not met: " + ", ".join(f"`{k}`" for k in missed)
    if absent:
        summary += "; not measured: " + ", ".join(f"`{k}`" for k in absent)
    lines += [
        "",
        "*value* is the docker runtime's median minus native's (seconds) or docker / native (x). For the 2-second "
        "tasks both medians have the 2 s of sleep taken off, so the value is the plain difference of the two "
        f"medians. {summary}.",
    ]
    pool_missed = [k for k in ("task_seq_noop_docker_minus_native_s", "task_par4_sleep2_docker_minus_native_s") if k in missed]
    if pool_missed:
        cold = _get(results, "tasks", "start_overhead", "seq", "docker_cold", "start_to_end", "p50")
        hit = _get(results, "tasks", "start_overhead", "seq", "docker", "supervisor_view", "p50")
        lines += [
            "",
            "**Why the warm pool misses its targets here.** Every try still gets a fresh container whose "
            "interpreter imports Airflow, about "
            + (f"{cold:.2f} s" if cold is not None else "a second")
            + " of CPU per try (the pool-off start → end above); the pool moves that work off the try's path but "
            "does not remove it. On 2 cores that are also running the scheduler, the api-server, the DAG processor "
            "and the supervisors, replacements cannot be imported as fast as tries arrive (about one a second "
            "sequentially, four every two seconds in the sleep shape), so tries take containers that are still "
            "importing: a pool *hit* then costs the rest of that import (workload received → first task-runner "
            "line, docker default: "
            + (f"{hit:.3f} s" if hit is not None else "see above")
            + "). Pooled containers import at the lowest CPU weight (`cpu_shares` 2 until claimed), so on a busy "
            "machine they wait longest. The task fork server, which forks instead of importing per try, reaches "
            "native speed; see ADR 0009 for the trade-off.",
        ]
    unavailable = _get(results, "tasks", "unavailable") or {}
    if unavailable:
        lines += [
            "",
            "**Not measured:** "
            + "; ".join(f"queue `{r}` ({RUNTIME_LABELS.get(r, r)}): {why}" for r, why in unavailable.items())
            + ".",
        ]
    lines.append("")
    return lines


# -- 1. task start ------------------------------------------------------------------------------------------
STARTS = (
    ("queued_to_start", "queued → start (`queued_when` → `start_date`)"),
    ("start_to_end", "start → end (`start_date` → `end_date`)"),
    ("queued_to_end", "queued → end"),
    ("supervisor_view", "supervisor: workload received → first task-runner line"),
)

PHASES = (
    ("queued_to_workload_received", "queued → workload received (executor pick-up, supervisor set-up, coordinator)"),
    ("spec_resolution", "spec resolution (bundle, sidecar, policy)"),
    ("claim_seconds", "pool: claim an idle container (`claim_seconds`)"),
    ("launch_image", "launch: image check"),
    ("launch_create", "launch: create"),
    ("launch_start", "launch: start"),
    ("launch_connect", "launch: bootstrap connects, fds handed over"),
    ("launch_other", "launch: other steps (run dir, leftover removal, inspect, …)"),
    ("resolved_to_started", "spec resolved → \"Started container\" (the whole launch)"),
    ("fork_to_first_line", "fork → first task-runner line (native)"),
    ("started_to_first_line", "\"Started container\" → first task-runner line (the imports, unless done ahead)"),
    ("first_line_to_parsed", "first line → DAG file parsed (start-up, bundle, parse)"),
    ("dag_file_parse", "… of which DAG file parse (`dag_file_parse_ms`)"),
    ("parsed_to_end", "DAG file parsed → end (run the task, report success)"),
)

SHAPE_TITLES = {
    "seq": "Sequential no-op tries (`max_active_tasks=1`)",
    "par4": "No-op tries, 4 at a time (`max_active_tasks=4`)",
    "par4_sleep2": "Tries that sleep 2 s, 4 at a time",
}


def _start_overhead(tasks: dict[str, Any]) -> list[str]:
    c = tasks["config"]
    so = tasks["start_overhead"]
    coordinators = c.get("coordinators", {})
    lines = [
        "## 1. Task start overhead",
        "",
        f"`bench/tasks.py` starts a real Airflow {c['executor']} deployment (api-server, scheduler, DAG processor; "
        f"`[core] parallelism = {c['parallelism']}`, {c['database']}) whose DAG files are generated from one template "
        "and differ only in their queue. Each queue has its own `[sdk] coordinators` entry "
        "(`[sdk] queue_to_coordinator`); every docker queue runs image `" + c["image"] + "`:",
        "",
        "| queue | coordinator entry | runtime |",
        "|---|---|---|",
    ]
    for runtime in c["runtimes"]:
        entry = coordinators.get(runtime, {})
        kwargs = entry.get("kwargs")
        shown = f"`{entry.get('classpath', '?').rsplit('.', 1)[-1]}`" + (f" kwargs `{_json(kwargs)}`" if kwargs else "")
        lines.append(f"| `{runtime}` | {shown} | {RUNTIME_LABELS.get(runtime, runtime)} |")
    lines += [
        "",
        "`bench/probe.py` is Airflow's own Python coordinator plus one \"workload received\" line in the task log, "
        "where the docker runtime writes its first line. Before anything is counted, every queue runs an uncounted "
        f"warm-up DAG ({2 * c['parallelism']} no-op tries, {c['parallelism']} at a time): every LocalExecutor worker "
        "process builds its coordinators, the default queue's pools fill and the fork servers start. Then each shape "
        f"runs {c['rounds']} time(s) per runtime, the order of the runtimes alternating each round: "
        f"{c['tasks_per_run']} no-op tries sequentially and 4 at a time, and {c['sleep_tasks_per_run']} tries that sleep "
        f"{c['sleep_seconds']:g} s, 4 at a time (native and the default configuration only). *Tries per second* is a DAG "
        "run's tries over the time from its first `queued_when` to its last `end_date` (median over runs).",
        "",
        "Airflow's `start_date` is written when the supervisor reports the child started: after the fork for "
        "native, once the container is connected for docker. The supervisor's view is the task log's \"workload "
        "received\" line to the task runner's first line (`::group::Pre Execute`, logged by `task_runner.main` "
        "once it is imported). Cells are p50 (p95).",
        "",
    ]
    for shape, cell in so.items():
        runtimes = cell["runtimes"]
        if not runtimes:
            continue
        native = cell.get("native", {})
        lines += [
            f"### {SHAPE_TITLES.get(shape, shape)}: {native.get('queued_to_end', {}).get('n', '?')} tries per runtime",
            "",
            "| | " + " | ".join(RUNTIME_LABELS.get(r, r) for r in runtimes) + " |",
            "|---" * (len(runtimes) + 1) + "|",
        ]
        for key, label in STARTS:
            lines.append(f"| {label} | " + " | ".join(_p(cell[r].get(key)) for r in runtimes) + " |")
        vs = cell.get("vs_native", {})
        lines.append(
            "| **queued → end, minus native (p50)** | — | "
            + " | ".join(f"**{_d(_get(vs, r, 'minus_p50', 'queued_to_end'))}**" for r in runtimes[1:])
            + " |"
        )
        lines.append(
            "| queued → end, / native (p50) | — | " + " | ".join(_x(_get(vs, r, "ratio_p50", "queued_to_end")) for r in runtimes[1:]) + " |"
        )
        if cell["body"] == "sleep2":
            lines.append(
                f"| queued → end − {SLEEP_SECONDS:g} s (p50) | "
                + " | ".join(_s(None if cell[r]["queued_to_end"]["p50"] is None else cell[r]["queued_to_end"]["p50"] - SLEEP_SECONDS) for r in runtimes)
                + " |"
            )
        lines.append(
            "| tries per second (first queued → last end) | "
            + " | ".join(_p(cell[r].get("tries_per_second"), lambda v: f"{v:.2f}") for r in runtimes)
            + " |"
        )
        lines.append(
            "| tries per second, / native | — | " + " | ".join(_x(_get(vs, r, "ratio_p50", "tries_per_second")) for r in runtimes[1:]) + " |"
        )
        lines.append(
            "| whole DAG run, trigger → finished (wall, p50) | "
            + " | ".join(f"{cell[r]['dag_run_wall_seconds']['p50']:.1f}" for r in runtimes)
            + " |"
        )
        lines.append("| pool: hit / miss / off (hit rate) | — | " + " | ".join(_pool(cell[r]) for r in runtimes[1:]) + " |")
        lines.append("")
    for shape in ("seq", "par4"):
        cell = so.get(shape)
        if not cell or not cell["runtimes"]:
            continue
        runtimes = cell["runtimes"]
        rows = [(k, label) for k, label in PHASES if any(cell[r].get(k) for r in runtimes)]
        lines += [
            f"### Where a try's start goes: {SHAPE_TITLES[shape][0].lower() + SHAPE_TITLES[shape][1:]}",
            "",
            "Phases between the timestamps of the task log and the launch timings of the \"Started container\" line. "
            "p50 (p95); a blank cell is a phase that runtime does not have (or does not log).",
            "",
            "| phase | " + " | ".join(RUNTIME_LABELS.get(r, r) for r in runtimes) + " |",
            "|---" * (len(runtimes) + 1) + "|",
        ]
        for key, label in rows:
            lines.append(f"| {label} | " + " | ".join(_p(cell[r].get(key)) for r in runtimes) + " |")
        extra = sorted({k for r in runtimes for k in cell[r] if k.startswith("launch_")} - {k for k, _ in PHASES})
        for key in extra:
            lines.append(f"| launch: `{key[len('launch_'):]}` | " + " | ".join(_p(cell[r].get(key)) for r in runtimes) + " |")
        lines.append("")
    lines += [
        "Up to \"workload received\" every runtime runs the same code (scheduler, LocalExecutor hand-over, the "
        "supervisor's API client and task log); its tail is upstream's and inflates Airflow's *queued → start* "
        "p95 without telling anything about containers, which is why the supervisor's view is reported too. "
        "A pool *hit* is a try that got an idle container whose bootstrap had already imported the task runner; "
        "a *miss* started a cold one; *off* is the pool switched off (the `pool` field of the \"Started "
        "container\" line; \"absent\" counts tries whose line has no such field).",
        "",
    ]
    return lines


def _json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(", ", ": "))


def _pool(cell: dict[str, Any]) -> str:
    counts = cell.get("pool") or {}
    if not counts:
        return "—"
    text = " / ".join(str(counts.get(k, 0)) for k in ("hit", "miss", "off"))
    if counts.get("absent"):
        text += f" (+{counts['absent']} absent)"
    rate = cell.get("pool_hit_rate")
    return text + (f" ({rate:.0%})" if rate is not None else "")


# -- 2. parsing -----------------------------------------------------------------------------------------------
def _parse(p: dict[str, Any]) -> list[str]:
    errors = p["import_errors"]
    runtimes = [r for r in PARSE_LABELS if r in p]
    lines = [
        "## 2. Parse throughput",
        "",
        f"`bench/parse.py` generates {p['files']} DAG files (a `DAG` with two `@task`s and a `BashOperator`), "
        "spread evenly over `adr-test/base`, `adr-test/dep-v1` and `adr-test/dep-v2` by their sidecars, and parses "
        f"the folder {p['rounds']} times per runtime (order alternating), driven the way the DAG processor manager "
        f"drives its children: {p['processes']} parse children at once (Airflow's default "
        "`[dag_processor] parsing_processes`), every child's sockets in one selector. Native is upstream's "
        "`DagFileProcessorProcess` (forked); the docker runtimes are `DockerDagFileProcessorProcess` with the default "
        "parsing configuration (no `fork_server` key set: the fork server, one long-lived container per parsing spec "
        "that forks a child per file) and with the strict `[scheduler_dag_parsing_docker_runtime] fork_server = False` "
        "(one container per file). Seconds per file run from the start of the child to its result.",
        "",
        "| | seconds per file p50 | p95 | full pass p50 | full pass p95 | files per second (full pass p50) | / native |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runtimes:
        d = p[r]
        ratio = _get(p, "vs_native", r, "throughput")
        lines.append(
            f"| {PARSE_LABELS[r]} | {_s(d['seconds_per_file']['p50'])} | {_s(d['seconds_per_file']['p95'])} | "
            f"{d['full_pass_seconds']['p50']:.2f} | {d['full_pass_seconds']['p95']:.2f} | {d['files_per_second']} | "
            f"{'—' if r == 'native' else f'**{_x(ratio)}**'} |"
        )
    dags = p["dags_per_pass"]
    lines += [
        "",
        "The default configuration's servers were started in an uncounted pass before the measured ones, as in a "
        "running DAG processor whose servers live across parsing loops ([ADR 0007](adr/0007-warm-starts.md)); "
        "starting a server costs what one per-file parse costs.",
        "",
        "DAGs serialized per pass: " + ", ".join(f"{r} {dags.get(r)}" for r in runtimes)
        + f"; import errors: {len(errors)}{' — ' + '; '.join(errors[:3]) if errors else ''}.",
        "",
    ]
    return lines


# -- 3. footprint -----------------------------------------------------------------------------------------------
def _footprint(tasks: dict[str, Any]) -> list[str]:
    f = tasks.get("footprint") or {}
    lines = ["## 3. Worker footprint", ""]
    n, d, idle = f.get("native"), f.get("docker"), f.get("idle_worker")

    def pair(part: dict[str, float] | None) -> str:
        return "—" if not part else f"{_mib(part['rss_mib'])} / {_mib(part['pss_mib'])}"

    if n and d and idle:
        native_total = n["supervisor"]["pss_mib"] + n["task_runner"]["pss_mib"]
        docker_worker = d["supervisor"]["pss_mib"] + d["containerd_shim"]["pss_mib"]
        docker_total = docker_worker + d["container_processes"]["pss_mib"]
        cg = d["container_cgroup"]
        lines += [
            f"{f['tasks_held']} tasks per runtime (native, and the default docker configuration) that wait for a "
            "release file, all running at once; while they run, `/proc` is sampled five times. Values are per running "
            "task (median over samples and tasks), memory in MiB as RSS / PSS. PSS shares pages among the processes "
            "that map them, so it is the fair per-process cost: a native task runner is forked from its supervisor "
            "and shares most of its pages; a container's interpreter shares nothing with the worker. The supervisor "
            "is the LocalExecutor worker process itself; each try's container is found from its \"Started "
            "container\" line (a container claimed from the pool carries no try labels).",
            "",
            "| per running task | native | docker |",
            "|---|---|---|",
            f"| supervisor process (RSS / PSS) | {pair(n['supervisor'])} | {pair(d['supervisor'])} |",
            f"| task runner on the worker (RSS / PSS) | {pair(n['task_runner'])} | — (in the container) |",
            f"| containerd shim of the container (RSS / PSS) | — | {pair(d['containerd_shim'])} |",
            f"| **worker-side processes, PSS** | **{_mib(native_total)}** | **{_mib(docker_worker)}** (supervisor + shim) |",
            f"| container's processes: tini + task runner (RSS / PSS) | — | {pair(d['container_processes'])} |",
            f"| container's cgroup: usage (rss + page cache) | — | {_mib(cg.get('usage_mib'))} ({_mib(cg.get('rss_mib'))} + {_mib(cg.get('cache_mib'))}) |",
            f"| **everything the task costs the host, PSS** | **{_mib(native_total)}** | **{_mib(docker_total)}** |",
            f"| … minus an idle worker process ({_mib(idle['pss_mib'])} PSS): added by the running try | "
            f"{_mib(native_total - idle['pss_mib'])} | {_mib(docker_total - idle['pss_mib'])} |",
            f"| dockerd + containerd RSS change per task | — | {_mib(d['docker_daemons_rss_delta_per_task_mib'])} |",
            f"| open file descriptors: supervisor | {n['supervisor']['fds']:.0f} | {d['supervisor']['fds']:.0f} |",
            f"| open file descriptors: task runner / container processes / shim | {n['task_runner']['fds']:.0f} / — / — | "
            f"— / {d['container_processes']['fds']:.0f} / {d['containerd_shim']['fds']:.0f} |",
            f"| threads: supervisor | {n['supervisor']['threads']:.0f} | {d['supervisor']['threads']:.0f} |",
            "",
            f"An idle LocalExecutor worker process (the same process before it picks up a try) holds {_mib(idle['rss_mib'])} / "
            f"{_mib(idle['pss_mib'])} MiB and {idle['fds']:.0f} file descriptors. Memory moves out of the worker's "
            "processes into the container, and grows: the container holds a whole interpreter that shares no pages "
            "with the worker. The cgroup's count can be lower than the processes' RSS because cgroup v1 charges a "
            "page-cache page to the container that first read it.",
            "",
        ]
    else:
        lines += ["Not measured in this run (the native or the default docker queue was unavailable).", ""]
    pool = tasks.get("pool_idle") or {}
    lines += ["### An idle pooled container", ""]
    if pool.get("measured"):
        cg = pool.get("container_cgroup") or {}
        lines += [
            f"After the warm-ups, the {pool['containers']} idle pooled containers (label `airflow-docker-runtime.pooled=true`, "
            "names `adr-pool-*`) were measured once their interpreters had stopped using CPU (the imports done): "
            "median over three samples and the containers, MiB.",
            "",
            "| one idle pooled container | RSS | PSS |",
            "|---|---|---|",
            f"| its processes (tini, bootstrap with the task runner imported) | {_mib(pool['container_processes']['rss_mib'])} | "
            f"{_mib(pool['container_processes']['pss_mib'])} |",
            f"| its containerd shim | {_mib(pool['containerd_shim']['rss_mib'])} | {_mib(pool['containerd_shim']['pss_mib'])} |",
            f"| **total (`pool_idle_container_pss_mib`)** | | **{_mib(pool['pss_mib'])}** |",
            f"| its cgroup: usage (rss + page cache) | {_mib(cg.get('usage_mib'))} ({_mib(cg.get('rss_mib'))} + {_mib(cg.get('cache_mib'))}) | |",
            "",
            "This is what the warm pool costs the host per idle container, on top of what the running tries cost.",
            "",
        ]
    else:
        lines += [f"Not measured: {pool.get('why', 'no pooled containers')}.", ""]
    return lines


# -- 4. profile ------------------------------------------------------------------------------------------------
def _profile(results: dict[str, Any]) -> list[str]:
    pr = results["profile"]
    w = pr["wall_seconds_p50"]
    it = pr["importtime"]
    lines = [
        "## 4. Where the time goes",
        "",
        "The largest cost of a cold docker try and of a per-file docker parse is the import of Airflow in the "
        f"container's fresh interpreter. `{pr['command']}` times fresh interpreters ({pr['repeat']} runs each, medians) "
        "in one container of the image and with the worker's own Python:",
        "",
        "| fresh interpreter that… | in the image | on the worker |",
        "|---|---|---|",
        f"| only starts (`python -c pass`) | {_s(w['interpreter_only']['image'])} | {_s(w['interpreter_only']['worker'])} |",
        f"| imports what the task child imports before its first line | {_s(w['task_child_imports']['image'])} | "
        f"{_s(w['task_child_imports']['worker'])} |",
        f"| imports the parse child's module (`airflow.dag_processing.processor`) | {_s(w['parse_child_imports']['image'])} | "
        f"{_s(w['parse_child_imports']['worker'])} |",
        "",
        "The import costs the same with or without Docker: it is Python loading Airflow, not the container (the "
        "test images ship compiled bytecode for everything, checked at build; `scripts/build-images.sh`). "
        f"`python -X importtime` of the task child's imports in the image ({it['modules']} modules, "
        f"{_s(it['total_seconds'])} s of import time):",
        "",
        "| self time by package | seconds |",
        "|---|---|",
    ]
    lines += [f"| {row['package']} | {_s(row['seconds'])} |" for row in it["self_seconds_by_package"]]
    lines += ["", "| heaviest subtrees (cumulative ≥ 60 ms) | depth | cumulative | self |", "|---|---|---|---|"]
    lines += [
        f"| `{row['module']}` | {row['depth']} | {_s(row['cumulative_seconds'])} | {_s(row['self_seconds'])} |"
        for row in it["heaviest_subtrees"]
    ]
    subtrees = {row["module"]: row["cumulative_seconds"] for row in it["heaviest_subtrees"]}
    trimmable = (subtrees.get("airflow.configuration") or 0) + (subtrees.get("libcst") or 0)
    cold = _minus_native_p50(results, "seq", "docker_cold")
    lines += [
        "",
        "Reading the tree: the task child imports `airflow.sdk`, but `airflow` is Airflow core's package (the image "
        "must carry `apache-airflow-core` to parse DAG files), and its `__init__` imports `airflow.configuration` "
        f"and `airflow.settings` ({_s(subtrees.get('airflow.configuration'))} s cumulative for the configuration "
        "subtree, SQLAlchemy's engine and ORM modules, the providers manager) before any task-runner code; the "
        f"`@task` decorator module pulls in `libcst` ({_s(subtrees.get('libcst'))} s). The native runtime pays none "
        "of this per try: its supervisor imported it once and forks.",
        "",
        "The warm paths ([ADR 0007](adr/0007-warm-starts.md)) take this import out of the try: the warm pool "
        "imports it in a container started ahead of the try (one container per try, as before); the fork servers "
        "import it once per runtime spec and fork a child per try or parse. A cold container (pool off, or a pool "
        f"miss) still pays it: {_d(cold)} s over native per sequential no-op try in this run. Trimming imports is "
        f"upstream work and helps every cold start: the two subtrees named above are {_s(trimmable)} s of the "
        f"{_s(it['total_seconds'])} s.",
        "",
    ]
    return lines


def _running() -> list[str]:
    return [
        "## Running it",
        "",
        "`flock /tmp/adr-e2e.lock make bench` (the lock keeps it off other heavy runs on a shared machine; about "
        "15–20 minutes on this 2-core machine with the default counts). Counts are options: "
        "`make bench BENCH_ARGS=\"--tasks 30 --sleep-tasks 16 --task-rounds 2 --parse-rounds 3\"`; "
        "`.venv/bin/python bench/run.py --help` lists them, `--parts parse` runs one part and "
        "`--task-runtimes native,docker` a subset of the queues. Each part is also a script of its own "
        "(`bench/tasks.py`, `bench/parse.py`, `bench/profile.py`). The task benchmark uses its own PostgreSQL "
        "database, `airflow_bench`, which it resets. No container or process is left behind: the run checks "
        "`docker ps -a --filter label=airflow-docker-runtime.managed` at the end. The run records the commit "
        "and `git status --porcelain src/` in `bench/results.json`; publish figures only from a clean `src/`. "
        "`bench/run.py --render-only` re-renders this page from `bench/results.json`. Sections that other scripts "
        "maintain between begin/end comment markers (the CeleryExecutor load test of `bench/celery_load.py`) are "
        "kept below as they were: they are not part of this run.",
    ]
