"""``airflow docker-runtime doctor``: can this host run tries and parses in containers? Checks, then a report.

The verdicts (:func:`compare_versions`, :func:`routing_check`, :func:`daemon_summary`, :func:`exit_code`)
are pure; :func:`run_checks` gathers their inputs from the configuration, the DAG folder and the daemons.
An image is checked by what the runtime itself would do: a short-lived container with the same hardened
create arguments (``create_kwargs``) running the spec's ``python`` on the bootstrap's own version reader.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from airflow_docker_runtime.inside.bootstrap import DISTRIBUTIONS, encode_versions, installed_versions, version_mismatch

Status = Literal["ok", "warning", "failure"]

COORDINATOR_CLASSPATH = "airflow_docker_runtime.coordinator.DockerCoordinator"
DAG_PROCESSOR_COMMAND = "airflow docker-runtime dag-processor"
LOW_DISK_BYTES = 2 * 1024**3
"""Below this much free space in a daemon's data root, images and container layers soon fail to unpack."""
NO_SIDECAR = "<DAG file without a sidecar>.py"
"""The DAG file name the image of files without a sidecar is resolved for (``container_repository:container_tag``)."""
PROBE = (
    "import json, sys; sys.path.insert(0, '/opt/airflow-docker-runtime'); import bootstrap; "
    "print(json.dumps(bootstrap.installed_versions()))"
)
"""Run by the image's ``python`` in the probe container: the versions the bootstrap's own check would read."""


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked (``check``, ``subject``), the verdict and why."""

    check: str
    subject: str
    status: Status
    detail: str


# -- pure verdicts -------------------------------------------------------------------------------------


def compare_versions(image: Mapping[str, str | None], worker: Mapping[str, str | None]) -> tuple[Status, str]:
    """
    Verdict on an image's Airflow (:func:`installed_versions` form) against the worker's: a missing
    distribution or another major.minor is a failure (the bootstrap refuses it, see ``version_mismatch``);
    another patch release a warning; the same versions ok.
    """
    shown = ", ".join(f"{name} {image.get(short) or '(not installed)'}" for short, name in DISTRIBUTIONS)
    if all(image.get(short) is None for short, _ in DISTRIBUTIONS):
        return "failure", f"no Airflow in the image: {shown}"
    mismatch = version_mismatch(encode_versions(worker), image)
    if mismatch:
        return "failure", mismatch.removeprefix("airflow-docker-runtime: ")
    patches = [f"{name} {image[short]}, this worker {worker[short]}" for short, name in DISTRIBUTIONS if image.get(short) != worker.get(short)]
    if patches:
        return "warning", f"another patch release: {'; '.join(patches)}"
    return "ok", shown


def routing_check(coordinators: Any, queue_to_coordinator: Any) -> Check:
    """``[sdk] coordinators`` / ``queue_to_coordinator`` must route at least one queue to a DockerCoordinator."""
    ours = {
        name for name, entry in (coordinators.items() if isinstance(coordinators, dict) else ())
        if isinstance(entry, dict) and entry.get("classpath") == COORDINATOR_CLASSPATH
    }
    routes = queue_to_coordinator if isinstance(queue_to_coordinator, dict) else {}
    queues = sorted(queue for queue, name in routes.items() if name in ours)
    if not ours:
        return Check("routing", "[sdk] coordinators", "failure", f"no entry has classpath {COORDINATOR_CLASSPATH}")
    if not queues:
        return Check("routing", "[sdk] queue_to_coordinator", "failure", f"no queue is routed to {', '.join(sorted(ours))}")
    return Check("routing", "[sdk] queue_to_coordinator", "ok", f"queues in containers: {', '.join(queues)}")


def flag_checks(task_flag: str, parse_flag: str) -> list[Check]:
    """The feature flags, and the DAG processor command they call for."""
    checks = [
        Check("flag", "[docker_runtime] task_execution_runtime", "ok", task_flag),
        Check("flag", "[docker_runtime] scheduler_dag_parsing_runtime", "ok", parse_flag),
    ]
    if task_flag == "native" and parse_flag == "native":
        checks.append(Check("flag", "[docker_runtime]", "warning", "both runtimes are native: nothing runs in a container"))
    if parse_flag == "docker":
        checks.append(Check("dag processor", "command", "ok", f"run `{DAG_PROCESSOR_COMMAND}` (plain `airflow dag-processor` parses natively)"))
    return checks


def daemon_summary(version: Mapping[str, Any], info: Mapping[str, Any], free_bytes: int | None) -> tuple[Status, str]:
    """A daemon's ``version`` and ``info`` answers (and the free space of its data root) as one verdict."""
    free = "unknown" if free_bytes is None else f"{free_bytes / 1024**3:.1f} GiB"
    detail = (
        f"Docker {version.get('Version', '?')}, API {version.get('ApiVersion', '?')}, storage {info.get('Driver', '?')}, "
        f"cgroup v{info.get('CgroupVersion', '?')}, live-restore {'on' if info.get('LiveRestoreEnabled') else 'off'}, "
        f"{free} free in {info.get('DockerRootDir', '?')}"
    )
    if free_bytes is not None and free_bytes < LOW_DISK_BYTES:
        return "warning", f"{detail} (low)"
    return "ok", detail


def exit_code(checks: Iterable[Check]) -> int:
    """0 healthy, 1 when any check failed (warnings do not fail)."""
    return 1 if any(c.status == "failure" for c in checks) else 0


def report(checks: list[Check]) -> dict[str, Any]:
    """The JSON / YAML document: ``healthy`` and every check."""
    return {"healthy": exit_code(checks) == 0, "checks": [asdict(c) for c in checks]}


# -- gathering ----------------------------------------------------------------------------------------


def run_checks(dag_folder: Path) -> list[Check]:
    """Every check, in report order: daemons, configuration, sidecars, images."""
    from airflow.configuration import conf

    from airflow_docker_runtime.container.gc import configured_socket_paths
    from airflow_docker_runtime.errors import DockerRuntimeError
    from airflow_docker_runtime.layers import runtime_flag

    checks: list[Check] = []
    try:
        paths = configured_socket_paths()
    except DockerRuntimeError as exc:
        checks.append(Check("configuration", "socket_path", "failure", str(exc)))
        paths = []
    checks += [daemon_check(path) for path in paths]

    coordinators = conf.getjson("sdk", "coordinators", fallback={}) or {}
    checks.append(routing_check(coordinators, conf.getjson("sdk", "queue_to_coordinator", fallback={}) or {}))
    try:
        checks += flag_checks(runtime_flag("task"), runtime_flag("parse"))
    except DockerRuntimeError as exc:
        checks.append(Check("flag", "[docker_runtime]", "failure", str(exc)))

    specs, spec_checks = resolve_folder(dag_folder, coordinator_kwargs(coordinators))
    checks += spec_checks
    checks += [image_check(spec, used_by) for spec, used_by in specs]
    return checks


def daemon_check(socket_path: str) -> Check:
    """Is the daemon at ``socket_path`` reachable; its version, storage, cgroups, live-restore and free disk."""
    import docker

    try:
        client = docker.DockerClient(base_url=socket_path, version="auto", timeout=20)
        try:
            version, info = client.version(), client.info()
        finally:
            client.close()
    except Exception as exc:  # any failure to talk to it is the verdict
        return Check("daemon", socket_path, "failure", f"does not answer: {exc}")
    try:  # the daemon is local (the runtime bind-mounts host paths), so its data root is on this host
        usage: int | None = shutil.disk_usage(info.get("DockerRootDir") or "/var/lib/docker").free
    except OSError:
        usage = None
    status, detail = daemon_summary(version, info, usage)
    return Check("daemon", socket_path, status, detail)


def coordinator_kwargs(coordinators: Any) -> dict[str, dict[str, Any]]:
    """The kwargs of each DockerCoordinator entry (its tries resolve with them)."""
    return {
        name: entry.get("kwargs") or {}
        for name, entry in (coordinators.items() if isinstance(coordinators, dict) else ())
        if isinstance(entry, dict) and entry.get("classpath") == COORDINATOR_CLASSPATH
    }


def resolve_folder(dag_folder: Path, entries: Mapping[str, Mapping[str, Any]]) -> tuple[list[tuple[Any, list[str]]], list[Check]]:
    """
    Resolve every sidecar in ``dag_folder`` (parsing, and tasks with each coordinator entry's kwargs and
    each per-task override) and the image of files without one: ``([(spec, used by)], checks)``.

    Specs are grouped by what an image check depends on (daemon, image, python, user, pull policy).
    """
    from airflow_docker_runtime.errors import RuntimeSpecError
    from airflow_docker_runtime.layers import load_sidecar
    from airflow_docker_runtime.resolve import resolve

    groups: dict[str, tuple[Any, list[str]]] = {}
    checks: list[Check] = []
    folder = dag_folder.resolve()
    sidecars = sorted(folder.rglob("*.py.metadata.yaml"))
    targets: list[tuple[Path, str]] = [(folder / NO_SIDECAR, "files without a sidecar")]
    targets += [(s.with_name(s.name.removesuffix(".metadata.yaml")), str(s.relative_to(folder))) for s in sidecars]
    for dag_file, label in targets:
        errors: dict[str, None] = {}
        try:
            sidecar = load_sidecar(dag_file, folder)
        except RuntimeSpecError as exc:
            checks.append(Check("sidecar", label, "failure", str(exc)))
            continue
        task_ids = [None, *(sorted(sidecar.tasks) if sidecar else [])]
        runs = [("parse", None, None)] + [("task", name, tid) for name in (entries or {None: {}}) for tid in task_ids]
        for purpose, entry, task_id in runs:
            try:
                resolution = resolve(
                    dag_file, purpose=purpose, task_id=task_id, root=folder,  # type: ignore[arg-type]
                    coordinator_options=dict(entries.get(entry) or {}) if entry else None, coordinator_name=entry,
                )
            except RuntimeSpecError as exc:
                errors[str(exc)] = None
                continue
            spec = resolution.spec
            key = json.dumps([spec.socket_path, spec.image, spec.python, spec.run_as_user, spec.pull_policy])
            groups.setdefault(key, (spec, []))[1].append(label)
        if dag_file.name == NO_SIDECAR:
            checks += [Check("image", label, "warning", f"{e} (every sidecar must name an image)") for e in errors]
        elif errors:
            checks += [Check("sidecar", label, "failure", e) for e in errors]
        else:
            checks.append(Check("sidecar", label, "ok", "valid and within the policy"))
    return [(spec, list(dict.fromkeys(used_by))) for spec, used_by in groups.values()], checks


def image_check(spec: Any, used_by: list[str]) -> Check:
    """The image of ``spec`` on its daemon: present (or pullable), its ``python`` runs, its Airflow versions."""
    import docker.errors
    import requests

    subject = spec.image
    where = f" (python {spec.python!r}; used by {', '.join(used_by[:3])}{', ...' if len(used_by) > 3 else ''})"
    try:
        client = docker.DockerClient(base_url=spec.socket_path, version="auto", timeout=60)
    except docker.errors.DockerException as exc:
        return Check("image", subject, "failure", f"Docker daemon at {spec.socket_path} does not answer: {exc}")
    try:
        try:
            image = client.api.inspect_image(spec.image)
        except docker.errors.ImageNotFound:
            status, detail = absent_image(client, spec)
            return Check("image", subject, status, detail + where)
        status, output = probe(client, spec, image)
        if status != 0:
            return Check("image", subject, "failure", f"{spec.python!r} does not run the version probe (exit {status}){where}: {output.strip()[-500:]}")
        try:
            versions = json.loads(output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return Check("image", subject, "failure", f"unexpected output of the version probe: {output.strip()[-500:]}")
        status, detail = compare_versions(versions, installed_versions())
        return Check("image", subject, status, detail + where)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        return Check("image", subject, "failure", f"{getattr(exc, 'explanation', None) or exc}")
    finally:
        client.close()


def absent_image(client: Any, spec: Any) -> tuple[Status, str]:
    """An image not on the daemon: a failure unless its pull policy allows a pull and the registry has it."""
    if spec.pull_policy == "never":
        return "failure", "not on the Docker daemon and pull_policy is 'never'"
    try:
        client.api.inspect_distribution(spec.image)
    except Exception as exc:
        return "failure", f"not on the Docker daemon and not pullable: {getattr(exc, 'explanation', None) or exc}"
    return "warning", "not on the Docker daemon; pullable, so pulled at first use (its versions are not checked until then)"


def probe(client: Any, spec: Any, image: Mapping[str, Any]) -> tuple[int, str]:
    """Run :data:`PROBE` with the spec's ``python`` in a container created exactly as a try's would be:
    (exit status, output). The container and its (empty) run directory are removed."""
    from airflow_docker_runtime import inside
    from airflow_docker_runtime.container.client import remove_container
    from airflow_docker_runtime.container.docker_args import LaunchRequest, container_name, create_kwargs
    from airflow_docker_runtime.container.owner import owner_labels

    run_dir = Path(tempfile.mkdtemp(prefix="adr-doctor-"))
    request = LaunchRequest(
        kind="doctor",
        name=container_name("doctor", spec.image, os.getpid(), run_dir.name),
        run_dir=run_dir,
        bootstrap_dir=Path(inside.__file__).parent,
        labels=owner_labels(),  # `gc` removes it if this command is killed
        image_user=(image.get("Config") or {}).get("User") or None,
    )
    kwargs = create_kwargs(spec, request, host_env={})
    kwargs["command"] = [spec.python, "-c", PROBE]
    container = None
    try:
        container = client.containers.create(**kwargs)
        try:
            container.start()
        except Exception as exc:  # e.g. the python is not in the image: "executable file not found"
            return 127, str(getattr(exc, "explanation", None) or exc)
        status = container.wait(timeout=spec.connect_timeout)["StatusCode"]
        return status, container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        if container is not None:
            remove_container(client, container.id)
        shutil.rmtree(run_dir, ignore_errors=True)

