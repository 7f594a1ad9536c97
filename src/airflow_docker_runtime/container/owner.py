"""Who owns a container: labels naming the supervising process, and the test that finds orphans.

Every container (task or parse) carries its owner's identity: the host name, the host's boot id, and the
supervisor's PID with that process's start time (so a PID reused by another process is not mistaken for
the owner). :func:`judge` is pure: it decides from the labels and a lookup of process start times.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

WORKER, BOOT_ID, PID, STARTED = "worker", "boot_id", "supervisor_pid", "supervisor_started"
KEEP = "keep"
"""Label set on containers kept after exit (``remove_container_after_exit = False``)."""

StartOf = Callable[[int], "int | None"]


def process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its closing ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # fields[0] is field 3 (state); field 22 is starttime
    except (IndexError, ValueError):
        return None


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def owner_labels() -> dict[str, str]:
    """This process as a container owner (unprefixed label keys)."""
    pid = os.getpid()
    return {WORKER: socket.gethostname(), BOOT_ID: boot_id(), PID: str(pid), STARTED: str(process_start_ticks(pid) or "")}


def owner_tag() -> str:
    """This process's identity in a file name: ``<pid>.<start ticks>``."""
    pid = os.getpid()
    return f"{pid}.{process_start_ticks(pid) or 0}"


def owner_alive(pid: int, started: str, start_of: StartOf = process_start_ticks) -> bool:
    """True while the process that had ``pid`` and start time ``started`` still runs."""
    ticks = start_of(pid)
    return ticks is not None and (not started or started == str(ticks))


@dataclass(frozen=True)
class Verdict:
    orphan: bool
    reason: str


def judge(labels: Mapping[str, str], *, host: str, boot: str, start_of: StartOf = process_start_ticks) -> Verdict:
    """Is the container with these (unprefixed) labels an orphan of a supervisor on ``host``?"""
    worker, pid_text = labels.get(WORKER), labels.get(PID, "")
    if not worker or not pid_text:
        return Verdict(False, "no owner labels")
    if worker != host:
        return Verdict(False, f"owned by host {worker!r}, not this host")
    if labels.get(BOOT_ID) and boot and labels[BOOT_ID] != boot:
        return Verdict(True, "this host rebooted since its supervisor started it")
    if not pid_text.isdigit() or int(pid_text) <= 0:
        return Verdict(False, f"unreadable supervisor_pid label {pid_text!r}")
    if owner_alive(int(pid_text), labels.get(STARTED, ""), start_of):
        return Verdict(False, f"supervisor pid {pid_text} is alive")
    return Verdict(True, f"supervisor pid {pid_text} is gone")
