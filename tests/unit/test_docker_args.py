"""Translating a runtime spec into docker-py's ``containers.create`` arguments (no daemon)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from docker.models.containers import _create_container_args
from docker.types import DeviceRequest, Mount

from airflow_docker_runtime.container.docker_args import (
    BOOTSTRAP_DIR_IN_CONTAINER,
    DEFAULT_USER,
    MANAGED_LABEL,
    RUN_DIR_IN_CONTAINER,
    LaunchRequest,
    container_name,
    container_user,
    create_kwargs,
    forwarded_config,
)
from airflow_docker_runtime.inside.bootstrap import WORKER_VERSIONS_ENV
from airflow_docker_runtime.spec import Volume
from tests.unit.factories import make_spec

MIB = 1024**2
GIB = 1024**3


@pytest.fixture
def request_(tmp_path: Path) -> LaunchRequest:
    return LaunchRequest(kind="task", name="adr-task-x", run_dir=tmp_path / "run", bootstrap_dir=tmp_path / "bootstrap")


def mounts_by_target(kwargs: dict) -> dict[str, Mount]:
    return {m["Target"]: m for m in kwargs["mounts"]}


def test_minimal_spec(request_):
    kwargs = create_kwargs(make_spec(), request_, host_env={})
    assert kwargs["image"] == "registry.example.com/airflow/base:latest"
    assert kwargs["command"] == ["python", f"{BOOTSTRAP_DIR_IN_CONTAINER}/bootstrap.py",
                                 f"{RUN_DIR_IN_CONTAINER}/supervisor.sock", "task"]
    assert kwargs["name"] == "adr-task-x"
    assert kwargs["init"] is True
    assert kwargs["detach"] is True
    assert kwargs["privileged"] is False
    assert kwargs["oom_kill_disable"] is False
    for absent in ("shm_size", "extra_hosts", "device_requests", "cap_add", "runtime"):
        assert absent not in kwargs


def test_the_defaults_are_the_hardened_profile(request_):
    kwargs = create_kwargs(make_spec(), request_, host_env={})
    assert kwargs["cap_drop"] == ["ALL"]
    assert kwargs["security_opt"] == ["no-new-privileges:true"]
    assert kwargs["user"] == DEFAULT_USER == "50000:50000"
    assert kwargs["network_mode"] == "none"
    assert (kwargs["mem_limit"], kwargs["memswap_limit"], kwargs["nano_cpus"], kwargs["pids_limit"]) == (GIB, GIB, 10**9, 512)
    assert kwargs["read_only"] is True
    assert kwargs["tmpfs"] == {"/tmp": f"rw,nosuid,nodev,size={256 * MIB}"}
    assert not any("seccomp" in option for option in kwargs["security_opt"])  # Docker's default profile applies


@pytest.mark.parametrize(
    ("run_as_user", "image_user", "user"),
    [
        (None, None, DEFAULT_USER),
        (None, "", DEFAULT_USER),
        (None, "root", DEFAULT_USER),
        (None, "0", DEFAULT_USER),
        (None, "0:0", DEFAULT_USER),
        (None, "airflow", DEFAULT_USER),  # a name may be uid 0 in the image's /etc/passwd
        (None, "50000", "50000"),
        (None, "1000:1000", "1000:1000"),
        ("1234:5", "root", "1234:5"),
        ("root", "1000", "root"),  # the operator's (or an allowed) choice
    ],
)
def test_the_user_is_never_root_unless_chosen(run_as_user, image_user, user):
    assert container_user(make_spec(run_as_user=run_as_user), image_user) == user


def test_the_operator_loosens_the_profile(request_):
    spec = make_spec(cap_add=("NET_BIND_SERVICE",), no_new_privileges=False, read_only_rootfs=False, runtime="runsc",
                     network_mode=None, memory=None, cpus=None, pids_limit=None)
    kwargs = create_kwargs(spec, request_, host_env={})
    assert (kwargs["cap_drop"], kwargs["cap_add"], kwargs["runtime"], kwargs["read_only"]) == (["ALL"], ["NET_BIND_SERVICE"], "runsc", False)
    for absent in ("security_opt", "tmpfs", "network_mode", "mem_limit", "nano_cpus", "pids_limit"):
        assert absent not in kwargs


def test_reserved_labels_never_come_from_the_spec(request_):
    spec = make_spec(labels={"team": "data", "airflow-docker-runtime.keep": "true", "airflow-docker-runtime.managed": "x"})
    labels = create_kwargs(spec, request_, host_env={})["labels"]
    assert labels["team"] == "data" and labels["airflow-docker-runtime.managed"] == "true"
    assert "airflow-docker-runtime.keep" not in labels


def test_run_dir_and_bootstrap_are_read_only(request_):
    mounts = mounts_by_target(create_kwargs(make_spec(), request_, host_env={}))
    assert set(mounts) == {RUN_DIR_IN_CONTAINER, BOOTSTRAP_DIR_IN_CONTAINER}
    run, bootstrap = mounts[RUN_DIR_IN_CONTAINER], mounts[BOOTSTRAP_DIR_IN_CONTAINER]
    assert (run["Type"], run["Source"], run["ReadOnly"]) == ("bind", str(request_.run_dir), True)
    assert (bootstrap["Type"], bootstrap["Source"], bootstrap["ReadOnly"]) == ("bind", str(request_.bootstrap_dir), True)


def test_bundles_are_mounted_read_only_at_the_same_path(tmp_path):
    request = LaunchRequest(kind="parse", name="n", run_dir=tmp_path, bootstrap_dir=tmp_path,
                            bundle_paths=("/opt/airflow/dags", "/srv/bundles/b1"))
    mounts = mounts_by_target(create_kwargs(make_spec(), request, host_env={}))
    for path in request.bundle_paths:
        assert (mounts[path]["Type"], mounts[path]["Source"], mounts[path]["ReadOnly"]) == ("bind", path, True)


def test_volumes_bind_for_host_paths_volume_for_names(request_):
    spec = make_spec(volumes=(Volume.parse("/srv/data:/data:ro"), Volume.parse("cache:/cache"), Volume.parse("/srv/out:/out")))
    mounts = mounts_by_target(create_kwargs(spec, request_, host_env={}))
    assert (mounts["/data"]["Type"], mounts["/data"]["Source"], mounts["/data"]["ReadOnly"]) == ("bind", "/srv/data", True)
    assert (mounts["/cache"]["Type"], mounts["/cache"]["Source"], mounts["/cache"]["ReadOnly"]) == ("volume", "cache", False)
    assert (mounts["/out"]["Type"], mounts["/out"]["ReadOnly"]) == ("bind", False)


def test_docker_socket_only_when_asked(request_):
    assert "/var/run/docker.sock" not in mounts_by_target(create_kwargs(make_spec(), request_, host_env={}))
    spec = make_spec(mount_docker_socket=True, socket_path="unix:///run/user/1000/docker.sock")
    socket = mounts_by_target(create_kwargs(spec, request_, host_env={}))["/var/run/docker.sock"]
    assert (socket["Type"], socket["Source"]) == ("bind", "/run/user/1000/docker.sock")


def test_limits_only_when_limit_resource(request_):
    limited = create_kwargs(make_spec(memory=256 * MIB, cpus=0.5, pids_limit=64), request_, host_env={})
    assert limited["mem_limit"] == 256 * MIB
    assert limited["memswap_limit"] == limited["mem_limit"]  # no swap beyond the limit
    assert limited["nano_cpus"] == 500_000_000
    assert limited["pids_limit"] == 64

    unlimited = create_kwargs(make_spec(memory=256 * MIB, cpus=0.5, pids_limit=64, limit_resource=False), request_, host_env={})
    assert not {"mem_limit", "memswap_limit", "nano_cpus", "pids_limit"} & set(unlimited)


@pytest.mark.parametrize(
    ("cpus", "nano"),
    [(0.5, 500_000_000), (1, 1_000_000_000), (1.5, 1_500_000_000), (0.1, 100_000_000), (0.3, 300_000_000),
     (2.01, 2_010_000_000), (4.1, 4_100_000_000)],
)
def test_nano_cpus_is_exact(request_, cpus, nano):
    assert create_kwargs(make_spec(cpus=cpus), request_, host_env={})["nano_cpus"] == nano


def test_shm_size_is_not_a_resource_limit(request_):
    assert create_kwargs(make_spec(shm_size=64 * MIB, limit_resource=False), request_, host_env={})["shm_size"] == 64 * MIB


def test_network_user_extra_hosts(request_):
    spec = make_spec(network_mode="none", run_as_user="50000:0", extra_hosts={"db": "10.0.0.1"}, privileged=True,
                     oom_kill_disable=True)
    kwargs = create_kwargs(spec, request_, host_env={})
    assert (kwargs["network_mode"], kwargs["user"], kwargs["extra_hosts"]) == ("none", "50000:0", {"db": "10.0.0.1"})
    assert (kwargs["privileged"], kwargs["oom_kill_disable"]) == (True, True)


def test_environment_precedence(tmp_path):
    request = LaunchRequest(kind="task", name="n", run_dir=tmp_path, bootstrap_dir=tmp_path,
                            environment={"LEVEL": "request", "FROM_REQUEST": "1"})
    spec = make_spec(environments={"LEVEL": "spec", "FROM_SPEC": "1", "AIRFLOW_HOME": "/opt/home", WORKER_VERSIONS_ENV: "core=9.9"})
    env = create_kwargs(spec, request, host_env={"LEVEL": "host", "FROM_HOST": "1", "PYTHONUNBUFFERED": "0"})["environment"]
    # built-in < worker's host variables < spec environments < what the runtime itself needs
    assert env == {"LEVEL": "request", "FROM_REQUEST": "1", "FROM_SPEC": "1", "FROM_HOST": "1",
                   "AIRFLOW_HOME": "/opt/home", "PYTHONUNBUFFERED": "0", WORKER_VERSIONS_ENV: env[WORKER_VERSIONS_ENV]}
    assert env[WORKER_VERSIONS_ENV] != "core=9.9"  # a sidecar cannot switch the version check off


def test_default_environment(request_):
    from importlib.metadata import version

    assert create_kwargs(make_spec(), request_, host_env={})["environment"] == {
        "AIRFLOW_HOME": "/tmp/airflow-home", "PYTHONUNBUFFERED": "1",
        # the bootstrap's version check: this worker's Task SDK and core
        WORKER_VERSIONS_ENV: f"task-sdk={version('apache-airflow-task-sdk')};core={version('apache-airflow-core')}",
    }


def test_labels_spec_plus_managed_and_request_identity(tmp_path):
    request = LaunchRequest(kind="parse", name="n", run_dir=tmp_path, bootstrap_dir=tmp_path, labels={"dag_id": "etl", "try": 2})
    spec = make_spec(labels={"team": "data", MANAGED_LABEL: "false", "airflow-docker-runtime.kind": "task"})
    labels = create_kwargs(spec, request, host_env={})["labels"]
    assert labels == {
        "team": "data",
        MANAGED_LABEL: "true",  # the reaper's label cannot be switched off from a sidecar
        "airflow-docker-runtime.kind": "parse",
        "airflow-docker-runtime.dag_id": "etl",
        "airflow-docker-runtime.try": "2",
    }
    assert MANAGED_LABEL == "airflow-docker-runtime.managed"


@pytest.mark.parametrize(("gpus", "count"), [("all", -1), ("2", 2)])
def test_gpus_become_a_device_request(request_, gpus, count):
    (device,) = create_kwargs(make_spec(gpus=gpus), request_, host_env={})["device_requests"]
    assert isinstance(device, DeviceRequest)
    assert (device.count, device.capabilities) == (count, [["gpu"]])


def test_kwargs_are_what_docker_py_create_accepts(request_):
    spec = make_spec(memory=256 * MIB, cpus=0.5, pids_limit=64, shm_size=64 * MIB, network_mode="none", run_as_user="50000",
                     extra_hosts={"db": "10.0.0.1"}, gpus="all", labels={"a": "b"}, environments={"X": "1"},
                     volumes=(Volume.parse("/srv/data:/data:ro"),), mount_docker_socket=True)
    kwargs = create_kwargs(spec, request_, host_env={})
    create = _create_container_args({**kwargs, "version": "1.41"})  # what containers.create() sends; raises on unknown keys
    host = create["host_config"]
    assert create["image"] == spec.image
    assert create["user"] == "50000"
    assert (host["Memory"], host["MemorySwap"], host["NanoCpus"], host["PidsLimit"]) == (256 * MIB, 256 * MIB, 500_000_000, 64)
    assert (host["Init"], host["NetworkMode"], host["ShmSize"]) == (True, "none", 64 * MIB)
    assert host["ExtraHosts"] == ["db:10.0.0.1"]
    assert len(host["Mounts"]) == 4


# -- container names and forwarded settings -----------------------------------------------------------


def test_container_name_is_valid_deterministic_and_unique():
    name = container_name("task", "my dag/ü", "task:1", "run 2024-01-01T00:00:00+00:00", -1, 1, "0190-ti")
    assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", name)
    assert name == container_name("task", "my dag/ü", "task:1", "run 2024-01-01T00:00:00+00:00", -1, 1, "0190-ti")
    assert name != container_name("task", "my dag/ü", "task:1", "run 2024-01-01T00:00:00+00:00", -1, 2, "0190-ti")
    assert container_name("task", "x" * 300, "y" * 300).startswith("adr-task-" + "x" * 30 + "-" + "y" * 30 + "-")
    assert len(container_name("task", "x" * 300, "y" * 300)) < 128


def test_forwarded_config_skips_unset_settings():
    values = {("core", "default_timezone"): "Europe/Paris", ("logging", "logging_level"): "DEBUG", ("core", "dagbag_import_timeout"): ""}
    assert forwarded_config(lambda section, key: values.get((section, key))) == {
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": "Europe/Paris", "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG"}


def test_stop_timeout_is_the_containers_own(request_):
    # Set at create, so every stop honours it: ours, a daemon shutting down, a plain `docker stop`.
    kwargs = create_kwargs(make_spec(stop_timeout=45), request_, host_env={})
    assert _create_container_args({**kwargs, "version": "1.41"})["stop_timeout"] == 45  # docker-py passes it on
