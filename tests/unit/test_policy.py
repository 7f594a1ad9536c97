"""The operator's policy on sidecars, and the secrets no layer may copy from the worker."""

from __future__ import annotations

import pytest

from airflow_docker_runtime.errors import PolicyViolation, RuntimeSpecError
from airflow_docker_runtime.layers import sidecar_path
from airflow_docker_runtime.policy import SidecarPolicy, check_host_environment, normalise_image
from airflow_docker_runtime.spec import DEFAULTS, RuntimeOptions
from tests.unit.factories import BASE_CONFIG, resolve_with, write_dag

GIB = 1024**3
OPERATOR = RuntimeOptions.model_validate(DEFAULTS).set_fields()
"""The operator's values when airflow.cfg sets nothing: the built-in hardened defaults."""


def check(policy: SidecarPolicy, operator: dict | None = None, **fields) -> None:
    layer = RuntimeOptions.model_validate(fields)
    policy.check_sidecar("dags/x.py.metadata.yaml", "docker_runtime.", layer, {**OPERATOR, **(operator or {})})


# (what the sidecar asks for, the key named in the denial, the policy that allows it)
DENIED_BY_DEFAULT = [
    pytest.param({"privileged": True}, "privileged", {"allow_privileged": True}, id="privileged"),
    pytest.param({"mount_docker_socket": True}, "mount_docker_socket", {"allow_docker_socket": True}, id="docker-socket"),
    pytest.param({"network_mode": "host"}, "network_mode", {"allow_host_network": True, "allowed_network_modes": ("host",)},
                 id="network-host"),
    pytest.param({"network_mode": "container:db"}, "network_mode",
                 {"allow_host_network": True, "allowed_network_modes": ("container:db",)}, id="network-container"),
    pytest.param({"oom_kill_disable": True}, "oom_kill_disable", {"allow_oom_kill_disable": True}, id="oom-kill-disable"),
    pytest.param({"limit_resource": False}, "limit_resource", {"allow_unlimited_resources": True}, id="no-limits"),
    pytest.param({"volumes": ["/etc:/host-etc:ro"]}, "volumes", {"allowed_host_paths": ("/etc",)}, id="host-path"),
    pytest.param({"image": "evil.example.com/x:1"}, "image", {"allowed_registries": ("evil.example.com",)}, id="registry"),
    pytest.param({"memory": "8g"}, "memory", {"max_memory": 8 * GIB}, id="max-memory"),
    pytest.param({"cpus": 4}, "cpus", {"max_cpus": 4.0}, id="max-cpus"),
    pytest.param({"pids_limit": 4096}, "pids_limit", {"max_pids": 4096}, id="max-pids"),
    pytest.param({"shm_size": "1g"}, "shm_size", {"max_shm_size": GIB}, id="max-shm"),
    pytest.param({"stop_timeout": 3600}, "stop_timeout", {"max_stop_timeout": 3600}, id="max-stop-timeout"),
    pytest.param({"connect_timeout": 600}, "connect_timeout", {"max_connect_timeout": 600.0}, id="max-connect-timeout"),
    pytest.param({"run_as_user": "root"}, "run_as_user", {"allowed_users": ("root",)}, id="root"),
    pytest.param({"run_as_user": "0:0"}, "run_as_user", {"allowed_users": ("0:0",)}, id="uid-0"),
    pytest.param({"run_as_user": "1234"}, "run_as_user", {"allowed_users": ("1234",)}, id="other-user"),
    pytest.param({"network_mode": "bridge"}, "network_mode", {"allowed_network_modes": ("bridge",)}, id="bridge"),
    pytest.param({"network_mode": "etl-net"}, "network_mode", {"allowed_network_modes": ("etl-net",)}, id="named-network"),
    pytest.param({"volumes": ["cache:/cache"]}, "volumes", {"allowed_volumes": ("cache",)}, id="named-volume"),
    pytest.param({"gpus": "all"}, "gpus", {"allow_gpus": True}, id="gpus"),
    pytest.param({"extra_hosts": {"db": "10.0.0.1"}}, "extra_hosts", {"allow_extra_hosts": True}, id="extra-hosts"),
    pytest.param({"labels": {"traefik.enable": "true"}}, "labels", {"allowed_label_prefixes": ("traefik.",)}, id="label"),
    pytest.param({"runtime": "runc"}, "runtime", {"allowed_runtimes": ("runc",)}, id="runtime"),
    pytest.param({"python": "/usr/bin/python3"}, "python", {"allowed_pythons": ("/usr/bin/python3",)}, id="python"),
    pytest.param({"remove_container_after_exit": False}, "remove_container_after_exit", {"allow_keep_containers": True},
                 id="keep"),
]

RESTRICTIVE = {"allowed_registries": ("registry.example.com",)}
"""Denies the registry row too (the bare default allows any registry)."""


@pytest.mark.parametrize(("fields", "key", "allow"), DENIED_BY_DEFAULT)
def test_denied_by_default(fields, key, allow):
    with pytest.raises(PolicyViolation) as info:
        check(SidecarPolicy(**RESTRICTIVE), **fields)
    assert (info.value.source, info.value.key) == ("dags/x.py.metadata.yaml", f"docker_runtime.{key}")
    assert "operator policy [docker_runtime_policy]" in str(info.value)
    assert isinstance(info.value, RuntimeSpecError)


@pytest.mark.parametrize(("fields", "key", "allow"), DENIED_BY_DEFAULT)
def test_allowed_when_the_operator_allows_it(fields, key, allow):
    check(SidecarPolicy(**{**RESTRICTIVE, **allow}), **fields)


@pytest.mark.parametrize(
    "fields",
    [{"privileged": False}, {"mount_docker_socket": False}, {"oom_kill_disable": False}, {"limit_resource": True},
     {"network_mode": "none"}, {"memory": "512m", "cpus": 0.5, "pids_limit": 100}, {"memory": "1g", "cpus": 1},
     {"shm_size": "64m", "stop_timeout": 5, "connect_timeout": 10, "tmpfs_size": "64m"}, {"pull_policy": "never"},
     {"pull_policy": "missing"}, {"no_new_privileges": True, "read_only_rootfs": True}, {"python": "python"},
     {"remove_container_after_exit": True}, {"image": "anything/at:all"}, {}],
)
def test_default_policy_allows_asking_for_less(fields):
    check(SidecarPolicy(), **fields)


@pytest.mark.parametrize(
    ("fields", "key", "operator"),
    [
        ({"pull_policy": "always"}, "pull_policy", {}),
        ({"no_new_privileges": False}, "no_new_privileges", {}),
        ({"read_only_rootfs": False}, "read_only_rootfs", {}),
        ({"tmpfs_size": "1g"}, "tmpfs_size", {}),
        ({"memory": "2g"}, "memory", {}),
        ({"cpus": 1.5}, "cpus", {}),
        ({"pids_limit": 513}, "pids_limit", {}),
        ({"shm_size": "65m"}, "shm_size", {}),
        ({"stop_timeout": 21}, "stop_timeout", {}),
        ({"connect_timeout": 61}, "connect_timeout", {}),
        ({"extra_hosts": {"db": "10.0.0.2"}}, "extra_hosts", {"extra_hosts": {"db": "10.0.0.1"}}),
        ({"gpus": "all"}, "gpus", {"gpus": "1"}),
    ],
)
def test_the_operators_values_are_the_ceiling(fields, key, operator):
    with pytest.raises(PolicyViolation) as info:
        check(SidecarPolicy(), operator, **fields)
    assert info.value.key == f"docker_runtime.{key}"


@pytest.mark.parametrize(
    ("fields", "operator"),
    [
        ({"memory": "4g", "cpus": 2, "pids_limit": 2048}, {"memory": 4 * GIB, "cpus": 2.0, "pids_limit": 2048}),
        ({"pull_policy": "always"}, {"pull_policy": "always"}),
        ({"network_mode": "bridge"}, {"network_mode": "bridge"}),
        ({"run_as_user": "1000"}, {"run_as_user": "1000"}),
        ({"extra_hosts": {"db": "10.0.0.1"}}, {"extra_hosts": {"db": "10.0.0.1"}}),
        ({"gpus": "1"}, {"gpus": "1"}),
        ({"shm_size": "1g"}, {"shm_size": GIB}),
        ({"runtime": "runsc"}, {"runtime": "runsc"}),
        ({"limit_resource": False, "read_only_rootfs": False}, {"limit_resource": False, "read_only_rootfs": False}),
    ],
)
def test_a_sidecar_may_repeat_the_operators_value(fields, operator):
    check(SidecarPolicy(), operator, **fields)


def test_named_volumes_must_be_allowed_by_name():
    check(SidecarPolicy(allowed_volumes=("shared-cache",)), volumes=["shared-cache:/cache"])
    with pytest.raises(PolicyViolation, match="volume 'other' is not an allowed volume \\(shared-cache\\)"):
        check(SidecarPolicy(allowed_volumes=("shared-cache",)), volumes=["shared-cache:/cache", "other:/o"])
    with pytest.raises(PolicyViolation, match="host path '/srv/ok' is outside the allowed host paths \\(none\\)"):
        check(SidecarPolicy(allowed_volumes=("shared-cache",)), volumes=["shared-cache:/cache", "/srv/ok:/ok"])


def test_host_network_needs_both_the_mode_and_the_switch():
    with pytest.raises(PolicyViolation, match="may not join another namespace"):
        check(SidecarPolicy(allowed_network_modes=("host",)), network_mode="host")
    with pytest.raises(PolicyViolation, match="not an allowed network mode"):
        check(SidecarPolicy(allow_host_network=True), network_mode="host")
    check(SidecarPolicy(allowed_network_modes=("host",), allow_host_network=True), network_mode="host")


def test_host_paths_inside_the_allow_list(tmp_path):
    allowed = tmp_path / "data"
    (allowed / "sub").mkdir(parents=True)
    policy = SidecarPolicy(allowed_host_paths=(str(allowed) + "/",))
    check(policy, volumes=[f"{allowed}:/data", f"{allowed}/sub:/sub:ro", f"{allowed}/not-yet-created:/n"])


@pytest.mark.parametrize("outside", ["{root}/data-evil", "{root}/secret", "{root}", "/"])
def test_host_paths_outside_the_allow_list(tmp_path, outside):
    (tmp_path / "data").mkdir()
    policy = SidecarPolicy(allowed_host_paths=(str(tmp_path / "data"),))
    with pytest.raises(PolicyViolation, match="outside the allowed host paths"):
        check(policy, volumes=[f"{outside.format(root=tmp_path)}:/mnt"])


def test_symlink_inside_an_allowed_dir_pointing_outside_is_denied(tmp_path):
    allowed, secret = tmp_path / "data", tmp_path / "secret"
    allowed.mkdir()
    secret.mkdir()
    (allowed / "link").symlink_to(secret)
    policy = SidecarPolicy(allowed_host_paths=(str(allowed),))
    with pytest.raises(PolicyViolation, match="outside the allowed host paths") as info:
        check(policy, volumes=[f"{allowed}/link:/mnt"])
    assert info.value.key == "docker_runtime.volumes"
    with pytest.raises(PolicyViolation):
        check(policy, volumes=[f"{allowed}/link/deeper:/mnt"])


def test_symlink_inside_an_allowed_dir_pointing_inside_is_allowed(tmp_path):
    allowed = tmp_path / "data"
    (allowed / "real").mkdir(parents=True)
    (allowed / "link").symlink_to(allowed / "real")
    check(SidecarPolicy(allowed_host_paths=(str(allowed),)), volumes=[f"{allowed}/link:/mnt"])


def test_allow_list_given_through_a_symlink_is_resolved_too(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    check(SidecarPolicy(allowed_host_paths=(str(tmp_path / "alias"),)), volumes=[f"{real}/x:/x"])


@pytest.mark.parametrize(
    ("image", "normalised"),
    [("busybox", "docker.io/library/busybox"), ("busybox:1", "docker.io/library/busybox:1"),
     ("adr-test/base:latest", "docker.io/adr-test/base:latest"), ("registry.example.com/x:1", "registry.example.com/x:1"),
     ("localhost/x", "localhost/x"), ("localhost:5000/x", "localhost:5000/x")],
)
def test_normalise_image(image, normalised):
    assert normalise_image(image) == normalised


@pytest.mark.parametrize(
    ("allowed", "image", "ok"),
    [
        (("registry.example.com",), "registry.example.com/team/app:1", True),
        (("registry.example.com",), "registry.example.com.evil.io/team/app:1", False),
        (("registry.example.com/team",), "registry.example.com/team/app:1", True),
        (("registry.example.com/team",), "registry.example.com/team-b/app:1", False),
        (("adr-test",), "adr-test/base:latest", True),
        (("adr-test",), "docker.io/adr-test/base:latest", True),
        (("adr-test",), "adr-test-evil/base:latest", False),
        (("adr-test",), "busybox", False),
        (("docker.io/library",), "busybox", True),
        (("localhost:5000",), "localhost:5000/x", True),
        ((), "anything", True),
    ],
)
def test_registry_allow_list(allowed, image, ok):
    assert SidecarPolicy(allowed_registries=allowed).registry_allowed(image) is ok


def test_max_memory_and_cpus_are_inclusive():
    policy = SidecarPolicy(max_memory=2 * GIB, max_cpus=2.0)
    check(policy, memory="2g", cpus=2)
    with pytest.raises(PolicyViolation, match="2049m is above the operator's limit 2g"):
        check(policy, memory="2049m")
    with pytest.raises(PolicyViolation, match="2.5 is above the operator's limit 2.0"):
        check(policy, cpus=2.5)


def test_policy_from_section():
    policy = SidecarPolicy.from_section(
        {"ALLOW_PRIVILEGED": "True", "allow_docker_socket": False, "allow_host_network": "yes",
         "allowed_host_paths": "/srv/a, /srv/b,", "allowed_registries": "reg.example.com", "max_memory": "4g",
         "max_cpus": "2", "allow_oom_kill_disable": ""}
    )
    assert policy == SidecarPolicy(allow_privileged=True, allow_host_network=True, allowed_host_paths=("/srv/a", "/srv/b"),
                                   allowed_registries=("reg.example.com",), max_memory=4 * GIB, max_cpus=2.0)
    assert SidecarPolicy.from_section(None) == SidecarPolicy()


@pytest.mark.parametrize(("key", "value"), [("allow_everything", "true"), ("max_pids", "ten"), ("max_memory", "lots"),
                                            ("max_cpus", "two"), ("max_cpus", "inf"), ("max_stop_timeout", "-1")])
def test_bad_policy_section_names_the_key(key, value):
    with pytest.raises(RuntimeSpecError) as info:
        SidecarPolicy.from_section({key: value})
    assert (info.value.source, info.value.key) == ("[docker_runtime_policy]", key)


# -- through resolve() ------------------------------------------------------------------------------


def test_policy_applies_to_task_overrides_with_their_key(tmp_path):
    dag = write_dag(tmp_path, "tasks:\n  t1:\n    docker_runtime:\n      privileged: true\n")
    with pytest.raises(PolicyViolation) as info:
        resolve_with(dag, task_id="t1")
    assert (info.value.source, info.value.key) == (str(sidecar_path(dag)), "tasks.t1.docker_runtime.privileged")
    # Another task, or parsing the file, never reads that override.
    assert resolve_with(dag, task_id="t2").spec.privileged is False
    assert resolve_with(dag, purpose="parse", task_id="t1").spec.privileged is False


def test_policy_section_lets_the_sidecar_through(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    dag = write_dag(tmp_path / "dags", f"docker_runtime:\n  privileged: true\n  volumes: ['{data}:/data:ro']\n")
    config = {**BASE_CONFIG, "docker_runtime_policy": {"allow_privileged": "true", "allowed_host_paths": str(data)}}
    spec = resolve_with(dag, config).spec
    assert spec.privileged is True
    assert [str(v) for v in spec.volumes] == [f"{data}:/data:ro"]


def test_the_operator_is_not_policed(tmp_path):
    config = {"docker_runtime": {**BASE_CONFIG["docker_runtime"], "privileged": "true", "network_mode": "host",
                                 "mount_docker_socket": "true", "limit_resource": "false", "run_as_user": "root",
                                 "no_new_privileges": "false", "read_only_rootfs": "false", "cap_add": "NET_ADMIN"}}
    spec = resolve_with(write_dag(tmp_path, "docker_runtime: {}\n"), config).spec
    assert (spec.privileged, spec.network_mode, spec.mount_docker_socket, spec.limit_resource) == (True, "host", True, False)
    assert (spec.run_as_user, spec.no_new_privileges, spec.read_only_rootfs, spec.cap_add) == ("root", False, False, ("NET_ADMIN",))


@pytest.mark.parametrize("name", ["AIRFLOW__CORE__FERNET_KEY", "AIRFLOW_CONN_MY_DB", "AIRFLOW_VAR_X", "_AIRFLOW_WWW_USER",
                                  "airflow__database__sql_alchemy_conn"])
def test_airflow_secrets_never_copied_from_the_host(name):
    with pytest.raises(PolicyViolation) as info:
        check_host_environment(("PATH", name), "[docker_runtime]")
    assert (info.value.source, info.value.key) == ("[docker_runtime]", "environment_variables_from_host")
    assert name in str(info.value)


def test_ordinary_host_variables_may_be_copied():
    check_host_environment(("PATH", "AWS_REGION", "MY_AIRFLOW__X", "AIRFLOW"), "[docker_runtime]")


@pytest.mark.parametrize("name", ["AIRFLOW__X", "AIRFLOW_CONN_X"])
@pytest.mark.parametrize("section", ["docker_runtime", "task_execution_docker_runtime"])
def test_airflow_secrets_refused_even_from_airflow_cfg(tmp_path, name, section):
    config = {**BASE_CONFIG, section: {**BASE_CONFIG.get(section, {}), "environment_variables_from_host": f"PATH,{name}"}}
    with pytest.raises(PolicyViolation) as info:
        resolve_with(write_dag(tmp_path), config)
    assert (info.value.source, info.value.key) == (f"[{section}]", "environment_variables_from_host")


def test_airflow_secrets_refused_from_coordinator_options(tmp_path):
    with pytest.raises(PolicyViolation) as info:
        resolve_with(write_dag(tmp_path), coordinator_options={"environment_variables_from_host": ["AIRFLOW_CONN_DB"]},
                     coordinator_name="gpu")
    assert (info.value.source, info.value.key) == ("[sdk] coordinators gpu", "environment_variables_from_host")
