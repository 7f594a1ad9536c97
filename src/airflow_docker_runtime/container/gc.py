"""Removing what a dead supervisor left behind: orphaned containers and run directories on this host.

A supervisor that dies without cleaning up (worker SIGKILL, OOM kill, power loss) leaves its container
to the in-container lifeline (the container stops by itself as soon as the supervisor's socket closes)
and the stopped container plus its run directory to :func:`sweep`. Only containers this runtime created
(``airflow-docker-runtime.managed=true``) and owned by this host are considered; see ``owner.judge``.
"""

from __future__ import annotations

import logging
import re
import shutil
import socket
import threading
import time
from datetime import datetime, timezone
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from airflow_docker_runtime.container import owner
from airflow_docker_runtime.container.docker_args import LABEL_PREFIX, MANAGED_LABEL
from airflow_docker_runtime.container.client import docker_client, remove_container
from airflow_docker_runtime.container.rundir import RUN_DIR_BASE

log = logging.getLogger(__name__)

RUN_DIR_NAME = re.compile(r"^run-(\d+)\.(\d+)-")
"""Run directories are named ``run-<supervisor pid>.<its start ticks>-<random>`` (launcher._make_run_dir)."""


@dataclass(frozen=True)
class Finding:
    """One managed container and what the sweep did with it."""

    name: str
    id: str
    state: str
    kind: str
    what: str
    reason: str
    action: str
    """``removed``, ``stopped`` (an orphan kept for inspection), ``would remove``/``would stop`` (dry run)
    or ``left`` (not an orphan, or kept)."""


def _what(labels: dict[str, str]) -> str:
    if labels.get("pooled") == "true":  # started by a warm pool; its try's identity is only in its name
        return f"pooled (warm pool pid {labels.get(owner.PID)})"
    if labels.get("kind") == "task":
        return f"{labels.get('dag_id')}.{labels.get('task_id')} run={labels.get('run_id')} try={labels.get('try_number')}"
    return labels.get("dag_file", "")


def sweep(
    client: docker.DockerClient, *, dry_run: bool = False, include_kept: bool = False, host: str | None = None
) -> list[Finding]:
    """Find this host's managed containers whose supervisor is gone; stop and remove them.

    ``host`` (tests only) replaces this host's name; PIDs are always looked up on this machine.
    """
    host, boot = host or socket.gethostname(), owner.boot_id()
    findings = []
    for summary in client.api.containers(all=True, filters={"label": f"{MANAGED_LABEL}=true"}):
        raw = summary.get("Labels") or {}
        labels = {k[len(LABEL_PREFIX) + 1 :]: v for k, v in raw.items() if k.startswith(f"{LABEL_PREFIX}.")}
        name = (summary.get("Names") or ["?"])[0].lstrip("/")
        state = summary.get("State", "")
        verdict = owner.judge(labels, host=host, boot=boot)
        kept = labels.get(owner.KEEP) == "true" and not include_kept
        if not verdict.orphan and not kept and state in ("exited", "dead", "created"):
            verdict = _left_behind(client, summary["Id"], state) or verdict
        if not verdict.orphan or (kept and state != "running"):
            action = "left"
        elif kept:  # an orphan someone asked to keep: stop it, leave it for inspection
            action = "would stop" if dry_run else _stop(client, summary["Id"])
        else:
            action = "would remove" if dry_run else _remove(client, summary["Id"])
        reason = verdict.reason + (" (kept: remove_container_after_exit = False)" if kept and verdict.orphan else "")
        findings.append(Finding(name, summary["Id"][:12], state, labels.get("kind", "?"), _what(labels), reason, action))
    return findings


LEFT_BEHIND_SECONDS = 120.0
"""A container that exited (or was never started) this long ago while its owner lives was not removed by
it: its removal failed (the daemon was down at that moment) or its launch died half-way. Its owner
removes a container within seconds of its exit, so after this long nobody else will."""


def _left_behind(client: docker.DockerClient, container_id: str, state: str) -> owner.Verdict | None:
    try:
        info = client.api.inspect_container(container_id)
    except docker.errors.NotFound:
        return None
    stamp = info["Created"] if state == "created" else info["State"].get("FinishedAt", "")
    try:
        when = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00" if "." in stamp else stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    age = (datetime.now(timezone.utc) - when).total_seconds()
    if age < LEFT_BEHIND_SECONDS:
        return None
    return owner.Verdict(True, f"{state} {age:.0f}s ago and not removed by its owner (its removal failed)")


def _remove(client: docker.DockerClient, container_id: str) -> str:
    remove_container(client, container_id)
    return "removed"


def _stop(client: docker.DockerClient, container_id: str) -> str:
    try:
        client.api.kill(container_id)
    except docker.errors.APIError as exc:
        if exc.status_code not in (404, 409):
            raise
    return "stopped"


def sweep_run_dirs(base: Path = RUN_DIR_BASE, *, dry_run: bool = False) -> list[Path]:
    """Delete run directories whose supervisor is gone; returns them."""
    gone = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return gone
    for entry in entries:
        match = RUN_DIR_NAME.match(entry.name)
        if match and entry.is_dir() and not owner.owner_alive(int(match[1]), match[2]):
            gone.append(entry)
            if not dry_run:
                shutil.rmtree(entry, ignore_errors=True)
    return gone


_last_sweep: dict[str, float] = {}
"""When each daemon was last swept successfully by this process (monotonic); absent: never."""
_sweeping: set[str] = set()
_swept_lock = threading.Lock()


def sweep_in_background(socket_path: str, every: float | None = None) -> threading.Thread | None:
    """Sweep ``socket_path``'s daemon off the caller's thread, unless this process swept it successfully
    less than ``every`` seconds ago (``None``: once per process). A failed sweep (the daemon was down) is
    tried again the next time this is called."""
    with _swept_lock:
        last = _last_sweep.get(socket_path)
        if socket_path in _sweeping or (last is not None and (every is None or time.monotonic() - last < every)):
            return None
        _sweeping.add(socket_path)
    thread = threading.Thread(target=_logged_sweep, args=(socket_path,), name="adr-gc", daemon=True)
    thread.start()
    return thread


def configured_socket_paths() -> list[str]:
    """Every Docker daemon this deployment's settings point at: both purposes and each coordinator entry."""
    from airflow.configuration import conf

    from airflow_docker_runtime.resolve import operator_setting

    paths = {operator_setting("socket_path", purpose) for purpose in ("task", "parse")}  # type: ignore[arg-type]
    entries = conf.getjson("sdk", "coordinators", fallback={}) or {}
    for entry in entries.values() if isinstance(entries, dict) else ():
        if isinstance(entry, dict) and str(entry.get("classpath", "")).endswith(".DockerCoordinator"):
            paths.add(operator_setting("socket_path", "task", entry.get("kwargs") or {}))
    return sorted(paths)


def sweep_on_start(socket_paths: Callable[[], Iterable[str]], *, background: bool = True) -> None:
    """Sweep the daemons ``socket_paths()`` names, once per process, if ``[docker_runtime] gc_on_start``.

    Called by a worker's coordinator when it is built, by ``airflow docker-runtime dag-processor`` when it
    starts, and by a Celery worker when it is ready (``integrations.celery``).
    """
    from airflow_docker_runtime.layers import gc_on_start

    try:
        if not gc_on_start():
            return
        paths = list(socket_paths())
    except Exception as exc:  # a bad setting is reported where it is used; the sweep just does not run
        log.warning("airflow-docker-runtime gc: not sweeping on start: %s", exc)
        return
    for path in paths:
        if background:
            sweep_in_background(path)
        else:
            with _swept_lock:
                _sweeping.add(path)
            _logged_sweep(path)


def sweep_if_due(socket_paths: Iterable[str]) -> None:
    """The periodic sweep (``[docker_runtime] gc_interval``): called for every try and parse, it sweeps a
    daemon in the background when this process last swept it longer ago than that, or its last sweep
    failed. Cheap when not due: a clock read per daemon."""
    from airflow_docker_runtime.layers import gc_interval, gc_on_start

    try:
        if not gc_on_start() or (every := gc_interval()) <= 0:
            return
    except Exception:
        return
    for path in socket_paths:
        sweep_in_background(path, every)


_unremoved: dict[str, set[str]] = {}
"""Per daemon, containers whose owner could not remove them (the daemon was down); see :func:`remove_later`."""
REMOVE_LATER_SECONDS = 600.0


def remove_later(client: docker.DockerClient, socket_path: str, container_id: str) -> None:
    """Remove a container whose removal just failed (its daemon went away) as soon as the daemon answers
    again: one thread per daemon tries with backoff for ten minutes. If this process ends first, or the
    daemon stays away longer, the sweep removes it (this process's next sweep is due at once)."""
    with _swept_lock:
        ids = _unremoved.setdefault(socket_path, set())
        first = not ids
        ids.add(container_id)
        _last_sweep.pop(socket_path, None)
    if first:
        threading.Thread(target=_remove_unremoved, args=(client, socket_path), name="adr-gc-remove", daemon=True).start()


def _remove_unremoved(client: docker.DockerClient, socket_path: str) -> None:
    deadline, delay = time.monotonic() + REMOVE_LATER_SECONDS, 0.5
    while True:
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
        with _swept_lock:
            ids = set(_unremoved[socket_path])
        for container_id in ids:
            try:
                remove_container(client, container_id)
            except Exception:  # still away
                continue
            with _swept_lock:
                _unremoved[socket_path].discard(container_id)
        with _swept_lock:
            if not _unremoved[socket_path] or time.monotonic() > deadline:
                del _unremoved[socket_path]
                return


def _logged_sweep(socket_path: str) -> None:
    try:
        findings = sweep(docker_client(socket_path))
        dirs = sweep_run_dirs()
    except Exception as exc:  # a failed sweep is logged, never a failed worker; the next call tries again
        log.warning("airflow-docker-runtime gc: sweep of %s failed: %s", socket_path, exc)
        return
    finally:
        with _swept_lock:
            _sweeping.discard(socket_path)
    with _swept_lock:
        _last_sweep[socket_path] = time.monotonic()
    acted = [f for f in findings if f.action != "left"]
    for finding in acted:
        log.warning("airflow-docker-runtime gc: %s orphaned container %s (%s): %s", finding.action, finding.name, finding.what, finding.reason)
    if acted or dirs:
        log.warning("airflow-docker-runtime gc: %d orphaned containers, %d run directories cleaned up", len(acted), len(dirs))
