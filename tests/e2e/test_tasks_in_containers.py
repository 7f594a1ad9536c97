"""Tasks run inside containers on a real Airflow 3.3 (LocalExecutor, PostgreSQL) and a real Docker daemon."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.support.containers import task_containers
from tests.support.stack import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

MANAGED = "airflow-docker-runtime.managed=true"


def containers_of(docker_client, dag_id: str, all_states: bool = True) -> list[str]:
    """IDs of this runtime's containers for ``dag_id`` (one list call: no race with removal)."""
    return [c["Id"] for c in task_containers(docker_client, dag_id, all_states)]


def run(stack, dag_id: str, timeout: float = 240) -> tuple[str, str]:
    run_id = stack.trigger(dag_id)
    return run_id, stack.wait_for_run(dag_id, run_id, timeout=timeout)


def test_isolation_each_dag_gets_its_own_dependencies(stack, docker_client):
    """DAG A needs adr_testdep 1, DAG B needs 2, the worker has neither; a native task gets their XCom."""
    stack.wait_for_dags(["isolation_v1", "isolation_v2"])
    runs = {dag_id: stack.trigger(dag_id) for dag_id in ("isolation_v1", "isolation_v2")}
    for dag_id, run_id in runs.items():
        assert stack.wait_for_run(dag_id, run_id) == "success", stack.task_log(dag_id, run_id, "check_version")
        version = stack.xcom(dag_id, run_id, "check_version")
        assert version == f"{dag_id[-1]}.0.0"
        assert stack.xcom(dag_id, run_id, "on_the_worker") == f"worker received {version}"
        log = stack.task_log(dag_id, run_id, "check_version")
        assert f"adr-test/dep-v{dag_id[-1]}:latest" in log and "Started container" in log
        assert "Container exited" in log and "'exit_code': 0" in log
        native_log = stack.task_log(dag_id, run_id, "on_the_worker")
        assert "Started container" not in native_log
        assert not containers_of(docker_client, dag_id), "containers must be removed after exit"
    with pytest.raises(ImportError):
        __import__("adr_testdep")


def test_airflow_features_work_inside_the_container(stack, docker_client):
    stack.wait_for_dags(["features"])
    run_id, state = run(stack, "features")
    tis = stack.task_instances("features", run_id)
    assert state == "success", {k: v["state"] for k, v in tis.items()}
    pulled = stack.xcom("features", run_id, "pull")
    variable, host, container_hostname = pulled.split("|")
    assert (variable, host) == ("value-from-airflow", "db.example.com")
    assert container_hostname != subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    assert stack.xcom("features", run_id, "total") == 12  # mapped 2+4+6
    assert {k for k in tis if k.startswith("double[")} == {"double[0]", "double[1]", "double[2]"}
    assert tis["flaky"]["try_number"] == 2 and stack.xcom("features", run_id, "flaky") == 2
    assert "first try fails on purpose" in stack.task_log("features", run_id, "flaky", try_number=1)
    assert tis["delete_resource"]["state"] == "success"

    log = stack.task_log("features", run_id, "push")
    for line in ("stdout line from the container", "stderr line from the container", "logging line from the container"):
        assert line in log
    assert "s3cr3t-pw" not in log  # the connection password is masked in the task log
    assert f"rendered run_id={run_id} dag=features" in stack.task_log("features", run_id, "templated")
    assert "memory=512m" in log and "network_mode': 'none'" in log


def test_execution_timeout_fails_the_task(stack, docker_client):
    stack.wait_for_dags(["fail_timeout"])
    run_id, state = run(stack, "fail_timeout")
    assert state == "failed"
    log = stack.task_log("fail_timeout", run_id, "too_slow")
    assert "Timeout" in log or "timed out" in log.lower()
    assert not containers_of(docker_client, "fail_timeout")


def test_oom_kill_is_a_retryable_failure_with_a_plain_message(stack, docker_client):
    stack.wait_for_dags(["oom"])
    run_id = stack.trigger("oom")
    ti = wait_for(
        lambda: (t := stack.task_instances("oom", run_id)["hog"])["state"] == "up_for_retry" and t,
        timeout=180,
        what="the OOM-killed task to be up_for_retry",
    )
    log = stack.task_log("oom", run_id, "hog", try_number=ti["try_number"])
    assert "Container killed: out of memory, limit 256m" in log
    assert "'oom_killed': True" in log
    assert not containers_of(docker_client, "oom")


def test_missing_image_fails_fast_with_the_image_name(stack, docker_client):
    stack.wait_for_dags(["missing_image"])
    started = time.monotonic()
    run_id, state = run(stack, "missing_image")
    assert state == "failed"
    assert time.monotonic() - started < 90
    log = stack.task_log("missing_image", run_id, "unreachable")
    assert "adr-test/does-not-exist:1.0" in log and "ImageNotFound" in log
    assert not containers_of(docker_client, "missing_image")


def test_forbidden_sidecar_request_fails_the_task_naming_file_and_key(stack):
    stack.wait_for_dags(["forbidden"])
    run_id, state = run(stack, "forbidden")
    assert state == "failed"
    log = stack.task_log("forbidden", run_id, "escalate")
    assert "forbidden.py.metadata.yaml" in log and "docker_runtime.privileged" in log


def test_unreachable_daemon_fails_the_task_with_a_clear_message(stack):
    stack.wait_for_dags(["fail_no_daemon"])
    run_id, state = run(stack, "fail_no_daemon")
    assert state == "failed"
    log = stack.task_log("fail_no_daemon", run_id, "never_starts")
    assert "does not answer" in log and "adr-e2e-no-daemon.sock" in log


def test_no_secret_in_the_container_and_nothing_survives_it(stack, docker_client):
    stack.wait_for_dags(["leak_check"])
    run_id = stack.trigger("leak_check")
    container_id = wait_for(
        lambda: (c := containers_of(docker_client, "leak_check", all_states=False)) and c[0],
        timeout=120,
        what="the leak_check container to run",
    )
    wait_for(lambda: _host_processes("sleep 4242"), timeout=60, what="the escaped background process to start")

    inspected = json.dumps(docker_client.api.inspect_container(container_id))
    env = stack.env
    for secret in (env["AIRFLOW__API_AUTH__JWT_SECRET"], env["AIRFLOW__CORE__FERNET_KEY"], "postgresql", "s3cr3t-pw"):
        assert secret not in inspected
    config = docker_client.api.inspect_container(container_id)["Config"]
    assert not [e for e in config["Env"] if e.startswith(("AIRFLOW__DATABASE", "AIRFLOW__API_AUTH", "AIRFLOW__CORE__FERNET"))]
    assert "eyJ" not in inspected  # no JWT anywhere (environment, command, labels, mounts)
    assert config["Labels"]["airflow-docker-runtime.dag_id"] == "leak_check"
    assert docker_client.api.inspect_container(container_id)["HostConfig"]["Init"] is True

    stack.api.post("/variables", json={"key": "leak_check_release", "value": "yes"}).raise_for_status()
    assert stack.wait_for_run("leak_check", run_id) == "success"
    wait_for(lambda: not containers_of(docker_client, "leak_check"), timeout=30, what="the container to be removed")
    assert not _host_processes("sleep 4242"), "a process started by the task survived its container"


def test_mark_failed_stops_the_container(stack, docker_client):
    stack.wait_for_dags(["mark_failed"])
    run_id = stack.trigger("mark_failed")
    wait_for(lambda: containers_of(docker_client, "mark_failed", all_states=False), timeout=120, what="the container to run")
    wait_for(lambda: stack.task_instances("mark_failed", run_id)["sleeper"]["state"] == "running", timeout=60, what="running")
    response = stack.api.patch(
        f"/dags/mark_failed/dagRuns/{run_id}/taskInstances/sleeper", json={"new_state": "failed"}
    )
    response.raise_for_status()
    marked = time.monotonic()
    # Heartbeat notices within a few seconds; stop_timeout is 5 s in the sidecar.
    wait_for(lambda: not containers_of(docker_client, "mark_failed"), timeout=60, what="the container to be stopped and removed")
    assert time.monotonic() - marked < 60
    assert stack.task_instances("mark_failed", run_id)["sleeper"]["state"] == "failed"


def _host_processes(pattern: str) -> list[str]:
    result = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True)
    return [line for line in result.stdout.splitlines() if "pgrep" not in line]


def test_task_code_is_confined_by_the_hardened_defaults(stack, docker_client):
    """Issue 11: from inside a task, no capability, no new privileges, not root, nothing of the host
    writable, no route to a host port -- while the control task (bridge) does reach that port."""
    import ipaddress
    import socket

    ipam = docker_client.api.inspect_network("bridge")["IPAM"]["Config"][0]
    gateway = ipam.get("Gateway") or str(next(ipaddress.ip_network(ipam["Subnet"]).hosts()))  # docker0's address
    with socket.create_server(("0.0.0.0", 0)) as listener:
        port = listener.getsockname()[1]
        stack.wait_for_dags(["hardened"])
        run_id = stack.trigger("hardened", conf={"host": gateway, "port": port})
        state = stack.wait_for_run("hardened", run_id)
    assert state == "success", stack.task_log("hardened", run_id, "probe")
    seen, control = stack.xcom("hardened", run_id, "probe"), stack.xcom("hardened", run_id, "probe_bridge")

    assert seen["uid"] != 0 and (seen["uid"], seen["gid"]) == (50000, 50000)
    assert int(seen["cap_eff"], 16) == 0 and int(seen["cap_prm"], 16) == 0
    assert seen["no_new_privs"] == "1"
    assert seen["seccomp"] == "2"  # Docker's default seccomp filter
    assert seen["attempts"] == {"run_dir": seen["attempts"]["run_dir"], "root_fs": "OSError", "bootstrap": "OSError",
                                "device_node": "PermissionError"}
    assert seen["attempts"]["run_dir"] in ("OSError", "PermissionError")  # read-only mount, not the task's directory
    assert seen["tmp_writable"] is True
    assert seen["reached_host_port"] is False
    assert control["reached_host_port"] is True, "the control must reach the port, or the probe proves nothing"
    assert control["uid"] == 50000 and int(control["cap_eff"], 16) == 0
