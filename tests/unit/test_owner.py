"""Who owns a container, and when it is an orphan (pure logic plus this host's /proc)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from airflow_docker_runtime.container import gc, owner

HOST, BOOT = "worker-1", "boot-a"


def labels(**overrides: str) -> dict[str, str]:
    return {"worker": HOST, "boot_id": BOOT, "supervisor_pid": "4242", "supervisor_started": "1000", **overrides}


def start_of(table: dict[int, int]):
    return table.get


@pytest.mark.parametrize(
    ("given", "processes", "orphan", "reason"),
    [
        (labels(), {4242: 1000}, False, "supervisor pid 4242 is alive"),
        (labels(), {}, True, "supervisor pid 4242 is gone"),
        (labels(), {4242: 2000}, True, "supervisor pid 4242 is gone"),  # the PID now belongs to another process
        (labels(supervisor_started=""), {4242: 2000}, False, "supervisor pid 4242 is alive"),  # no start time: PID only
        (labels(boot_id="boot-b"), {4242: 1000}, True, "this host rebooted since its supervisor started it"),
        (labels(worker="worker-2"), {}, False, "owned by host 'worker-2', not this host"),
        ({"dag_id": "d"}, {}, False, "no owner labels"),
        (labels(supervisor_pid="x"), {}, False, "unreadable supervisor_pid label 'x'"),
        (labels(supervisor_pid="0"), {}, False, "unreadable supervisor_pid label '0'"),
    ],
)
def test_judge(given, processes, orphan, reason):
    verdict = owner.judge(given, host=HOST, boot=BOOT, start_of=start_of(processes))
    assert (verdict.orphan, verdict.reason) == (orphan, reason)


def test_owner_labels_describe_this_process():
    mine = owner.owner_labels()
    assert mine["supervisor_pid"] == str(os.getpid())
    assert int(mine["supervisor_started"]) == owner.process_start_ticks(os.getpid()) > 0
    assert mine["boot_id"] == owner.boot_id() != ""
    assert not owner.judge(mine, host=mine["worker"], boot=mine["boot_id"]).orphan


def test_a_finished_process_is_gone_and_its_start_time_unreadable():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert owner.process_start_ticks(child.pid) is None
    assert not owner.owner_alive(child.pid, "")


def test_start_ticks_survive_a_command_name_with_spaces_and_parentheses(tmp_path):
    script = tmp_path / "odd) name (x"
    script.write_text("import time\ntime.sleep(30)\n")
    child = subprocess.Popen([sys.executable, str(script)])
    try:
        ticks = owner.process_start_ticks(child.pid)
        assert ticks is not None and ticks >= owner.process_start_ticks(os.getpid())
    finally:
        child.kill()
        child.wait()


def test_sweep_run_dirs_deletes_only_directories_of_dead_supervisors(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = tmp_path / f"run-{owner.owner_tag()}-abc"
    reused_pid = tmp_path / f"run-{os.getpid()}.1-def"  # this PID, but another process's start time
    gone = tmp_path / f"run-{dead.pid}.5-ghi"
    unrelated = tmp_path / "not-a-run-dir"
    for d in (mine, reused_pid, gone, unrelated):
        d.mkdir()
    (gone / "supervisor.sock").write_text("")

    assert sorted(gc.sweep_run_dirs(tmp_path, dry_run=True)) == sorted([reused_pid, gone])
    assert gone.exists()
    assert sorted(gc.sweep_run_dirs(tmp_path)) == sorted([reused_pid, gone])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, unrelated.name])


def test_gc_finds_every_configured_daemon(monkeypatch):
    """Base settings, a purpose section and each DockerCoordinator entry may name a daemon; others are ignored."""
    import json

    monkeypatch.setenv("AIRFLOW__DOCKER_RUNTIME__SOCKET_PATH", "unix:///run/base.sock")
    monkeypatch.setenv("AIRFLOW__SCHEDULER_DAG_PARSING_DOCKER_RUNTIME__SOCKET_PATH", "unix:///run/parse.sock")
    monkeypatch.setenv(
        "AIRFLOW__SDK__COORDINATORS",
        json.dumps({
            "gpu": {"classpath": "airflow_docker_runtime.coordinator.DockerCoordinator", "kwargs": {"socket_path": "tcp://gpu:2375"}},
            "plain": {"classpath": "airflow_docker_runtime.coordinator.DockerCoordinator"},
            "java": {"classpath": "airflow.sdk.coordinators.java.JavaCoordinator", "kwargs": {"socket_path": "unix:///nope"}},
        }),
    )
    assert gc.configured_socket_paths() == ["tcp://gpu:2375", "unix:///run/base.sock", "unix:///run/parse.sock"]


def test_gc_on_start_is_a_boolean_setting():
    from airflow_docker_runtime.errors import RuntimeSpecError
    from airflow_docker_runtime.layers import gc_on_start

    assert gc_on_start(lambda section: {}) is True
    assert gc_on_start(lambda section: {"gc_on_start": "False"}) is False
    with pytest.raises(RuntimeSpecError, match=r"\[docker_runtime\].*gc_on_start.*expected true or false, got 'sometimes'"):
        gc_on_start(lambda section: {"gc_on_start": "sometimes"})
