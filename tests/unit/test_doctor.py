"""The pure parts of ``airflow docker-runtime doctor`` and of the bootstrap's version check."""

from __future__ import annotations

import pytest

from airflow_docker_runtime.doctor import (
    COORDINATOR_CLASSPATH,
    LOW_DISK_BYTES,
    Check,
    compare_versions,
    daemon_summary,
    exit_code,
    flag_checks,
    report,
    routing_check,
)
from airflow_docker_runtime.inside.bootstrap import encode_versions, version_mismatch

WORKER = {"task-sdk": "1.3.2", "core": "3.3.2"}


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ({"task-sdk": "1.3.2", "core": "3.3.2"}, None),
        ({"task-sdk": "1.3.0", "core": "3.3.9"}, None),  # another patch release talks the same protocol
        ({"task-sdk": "1.4.0", "core": "3.3.2"},
         "airflow-docker-runtime: image has apache-airflow-task-sdk 1.4.0, this worker 1.3.2: the image must have the worker's minor version (1.3)"),
        ({"task-sdk": "1.3.2", "core": "3.2.0"},
         "airflow-docker-runtime: image has apache-airflow-core 3.2.0, this worker 3.3.2: the image must have the worker's minor version (3.3)"),
        ({"task-sdk": "2.3.2", "core": "3.3.2"},
         "airflow-docker-runtime: image has apache-airflow-task-sdk 2.3.2, this worker 1.3.2: the image must have the worker's minor version (1.3)"),
        ({"task-sdk": None, "core": None},
         "airflow-docker-runtime: image has apache-airflow-task-sdk (not installed), this worker 1.3.2: the image must have the worker's minor version (1.3)"),
    ],
)
def test_version_mismatch(image, expected):
    assert version_mismatch(encode_versions(WORKER), image) == expected


def test_version_mismatch_checks_only_what_the_worker_names():
    assert encode_versions({"task-sdk": "1.3.2", "core": None}) == "task-sdk=1.3.2"
    assert version_mismatch("task-sdk=1.3.2", {"task-sdk": "1.3.7", "core": "2.0.0"}) is None
    assert version_mismatch("", {"task-sdk": None, "core": None}) is None


@pytest.mark.parametrize(
    ("image", "status", "detail"),
    [
        (WORKER, "ok", "apache-airflow-task-sdk 1.3.2, apache-airflow-core 3.3.2"),
        ({"task-sdk": "1.3.1", "core": "3.3.2"}, "warning", "another patch release: apache-airflow-task-sdk 1.3.1, this worker 1.3.2"),
        ({"task-sdk": "1.4.0", "core": "3.3.2"}, "failure",
         "image has apache-airflow-task-sdk 1.4.0, this worker 1.3.2: the image must have the worker's minor version (1.3)"),
        ({"task-sdk": None, "core": None}, "failure",
         "no Airflow in the image: apache-airflow-task-sdk (not installed), apache-airflow-core (not installed)"),
    ],
)
def test_compare_versions(image, status, detail):
    assert compare_versions(image, WORKER) == (status, detail)


def test_routing_needs_a_queue_routed_to_our_coordinator():
    ours = {"docker": {"classpath": COORDINATOR_CLASSPATH}, "other": {"classpath": "x.Y"}}
    assert routing_check(ours, {"default": "docker", "b": "other"}).detail == "queues in containers: default"
    assert routing_check(ours, {"b": "other"}).status == "failure"
    assert routing_check({"other": {"classpath": "x.Y"}}, {"b": "other"}).detail == f"no entry has classpath {COORDINATOR_CLASSPATH}"
    assert routing_check("not json", None).status == "failure"


def test_flag_checks_name_the_dag_processor_command_and_warn_when_nothing_runs_in_a_container():
    docker = flag_checks("docker", "docker")
    assert [c.status for c in docker] == ["ok"] * 3 and "`airflow docker-runtime dag-processor`" in docker[-1].detail
    assert flag_checks("native", "native")[-1].status == "warning"


def test_daemon_summary():
    version = {"Version": "24.0.7", "ApiVersion": "1.43"}
    info = {"Driver": "overlay2", "CgroupVersion": "2", "LiveRestoreEnabled": True, "DockerRootDir": "/var/lib/docker"}
    assert daemon_summary(version, info, 10 * 1024**3) == (
        "ok", "Docker 24.0.7, API 1.43, storage overlay2, cgroup v2, live-restore on, 10.0 GiB free in /var/lib/docker")
    assert daemon_summary(version, info, LOW_DISK_BYTES - 1)[0] == "warning"
    assert "unknown free" in daemon_summary(version, {}, None)[1]


def test_exit_code_and_report_warnings_do_not_fail():
    ok, warning, failure = (Check("c", "s", status, "d") for status in ("ok", "warning", "failure"))  # type: ignore[arg-type]
    assert exit_code([ok, warning]) == 0 and exit_code([ok, failure]) == 1
    assert report([ok, warning]) == {"healthy": True, "checks": [
        {"check": "c", "subject": "s", "status": "ok", "detail": "d"}, {"check": "c", "subject": "s", "status": "warning", "detail": "d"}]}
