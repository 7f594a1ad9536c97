"""Hostile sidecars and operator/sidecar combinations: each is refused, naming the file and the key,
before any Docker API call.

Every case goes through the two entry points that turn a DAG file into a container: the parse of
``airflow docker-runtime parse`` / the DAG processor (``parse_file`` -> ``DockerDagFileProcessorProcess``)
and the resolution a task try starts with (``resolve(purpose="task")``, what the coordinator calls before
it launches). ``socket_path`` points at a counting proxy in front of the real daemon; a case passes only
if the proxy saw no request at all. The positive control proves the proxy does count: an accepted
sidecar, through the same path, makes Docker calls and parses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from airflow_docker_runtime.errors import RuntimeSpecError
from airflow_docker_runtime.layers import sidecar_path
from airflow_docker_runtime.resolve import resolve
from tests.support.docker_proxy import DockerProxy

pytestmark = pytest.mark.docker

IMAGE = "adr-test/base:latest"


@dataclass(frozen=True)
class Hostile:
    """A sidecar (text, bytes, or a function that makes the file) and the key its refusal must name."""

    sidecar: str | bytes | Callable[[Path], None]
    key: str
    operator: dict[str, str] = field(default_factory=dict)
    """Extra ``AIRFLOW__SECTION__KEY`` settings of the operator for this case."""
    task_only: bool = False
    """Only a task reads it (a ``tasks:`` override): parsing ignores it by design."""


def dr(*lines: str) -> str:
    return "docker_runtime:\n" + "".join(f"  {line}\n" for line in lines)


def _symlink_outside(sidecar: Path) -> None:
    sidecar.symlink_to("/etc/hostname")


def _fifo(sidecar: Path) -> None:
    os.mkfifo(sidecar)


POLICY = "AIRFLOW__DOCKER_RUNTIME_POLICY__"
RUNTIME = "AIRFLOW__DOCKER_RUNTIME__"
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, n in zip("abcdefgh", "bcdefghi")
) + "docker_runtime:\n  gpus: *i\n"

HOSTILE: dict[str, Hostile] = {
    # Reaching the host or the daemon.
    "privileged": Hostile(dr("privileged: true"), "docker_runtime.privileged"),
    "docker-socket": Hostile(dr("mount_docker_socket: true"), "docker_runtime.mount_docker_socket"),
    "host-network": Hostile(dr("network_mode: host"), "docker_runtime.network_mode"),
    "container-network": Hostile(dr("network_mode: 'container:adr-api'"), "docker_runtime.network_mode"),
    "bridge-when-operator-says-none": Hostile(dr("network_mode: bridge"), "docker_runtime.network_mode"),
    "named-network": Hostile(dr("network_mode: other-tenant"), "docker_runtime.network_mode"),
    "network-not-in-allow-list": Hostile(dr("network_mode: db-net"), "docker_runtime.network_mode",
                                         {f"{POLICY}ALLOWED_NETWORK_MODES": "etl-net"}),
    "host-allowed-but-switch-off": Hostile(dr("network_mode: host"), "docker_runtime.network_mode",
                                           {f"{POLICY}ALLOWED_NETWORK_MODES": "host"}),
    "host-path-volume": Hostile(dr("volumes: ['/etc:/host-etc:ro']"), "docker_runtime.volumes"),
    "docker-socket-volume": Hostile(dr("volumes: ['/var/run/docker.sock:/var/run/docker.sock']"), "docker_runtime.volumes"),
    "root-volume": Hostile(dr("volumes: ['/:/host']"), "docker_runtime.volumes"),
    "named-volume": Hostile(dr("volumes: ['other-tenant-data:/data']"), "docker_runtime.volumes"),
    "named-volume-not-allowed": Hostile(dr("volumes: ['secrets:/s']"), "docker_runtime.volumes",
                                        {f"{POLICY}ALLOWED_VOLUMES": "cache"}),
    "relative-volume": Hostile(dr("volumes: ['./data:/data']"), "docker_runtime.volumes"),
    "home-volume": Hostile(dr("volumes: ['~/x:/x']"), "docker_runtime.volumes"),
    "traversal-volume": Hostile(dr("volumes: ['/tmp/../etc:/x']"), "docker_runtime.volumes"),
    "shadow-run-dir": Hostile(dr("volumes: ['cache:/run/airflow-docker-runtime']"), "docker_runtime.volumes",
                              {f"{POLICY}ALLOWED_VOLUMES": "cache"}),
    "shadow-bootstrap": Hostile(dr("volumes: ['cache:/opt/airflow-docker-runtime/bootstrap.py']"), "docker_runtime.volumes",
                                {f"{POLICY}ALLOWED_VOLUMES": "cache"}),
    "cover-run-dir": Hostile(dr("volumes: ['cache:/run']"), "docker_runtime.volumes", {f"{POLICY}ALLOWED_VOLUMES": "cache"}),
    "volume-on-root": Hostile(dr("volumes: ['cache:/']"), "docker_runtime.volumes"),
    "two-volumes-one-target": Hostile(dr("volumes: ['a:/x', 'b:/x']"), "docker_runtime.volumes"),
    # More than the operator set.
    "root-user": Hostile(dr("run_as_user: root"), "docker_runtime.run_as_user"),
    "uid-0": Hostile(dr("run_as_user: '0'"), "docker_runtime.run_as_user"),
    "uid-0-gid": Hostile(dr("run_as_user: '0:0'"), "docker_runtime.run_as_user"),
    "root-group-name": Hostile(dr("run_as_user: 'root:users'"), "docker_runtime.run_as_user"),
    "other-uid": Hostile(dr("run_as_user: '1001'"), "docker_runtime.run_as_user"),
    "root-not-in-allow-list": Hostile(dr("run_as_user: root"), "docker_runtime.run_as_user", {f"{POLICY}ALLOWED_USERS": "1000"}),
    "memory-above-default": Hostile(dr("memory: 64g"), "docker_runtime.memory"),
    "memory-above-operator": Hostile(dr("memory: 1g"), "docker_runtime.memory", {f"{RUNTIME}MEMORY": "512m"}),
    "memory-above-max": Hostile(dr("memory: 3g"), "docker_runtime.memory", {f"{POLICY}MAX_MEMORY": "2g"}),
    "memory-below-docker-minimum": Hostile(dr("memory: 1k"), "docker_runtime.memory"),
    "memory-huge-int": Hostile(dr("memory: " + "9" * 5000), "<file>"),
    "cpus-above-default": Hostile(dr("cpus: 64"), "docker_runtime.cpus"),
    "cpus-inf": Hostile(dr("cpus: .inf"), "docker_runtime.cpus"),
    "cpus-nan": Hostile(dr("cpus: .nan"), "docker_runtime.cpus"),
    "cpus-zero": Hostile(dr("cpus: 0"), "docker_runtime.cpus"),
    "pids-above-default": Hostile(dr("pids_limit: 100000"), "docker_runtime.pids_limit"),
    "pids-above-max": Hostile(dr("pids_limit: 300"), "docker_runtime.pids_limit", {f"{POLICY}MAX_PIDS": "256"}),
    "shm-above-docker-default": Hostile(dr("shm_size: 8g"), "docker_runtime.shm_size"),
    "tmpfs-above-operator": Hostile(dr("tmpfs_size: 10g"), "docker_runtime.tmpfs_size"),
    "stop-timeout-unbounded": Hostile(dr("stop_timeout: 86400"), "docker_runtime.stop_timeout"),
    "stop-timeout-above-operator": Hostile(dr("stop_timeout: 600"), "docker_runtime.stop_timeout"),
    "connect-timeout-above-operator": Hostile(dr("connect_timeout: 3000"), "docker_runtime.connect_timeout"),
    "pull-always": Hostile(dr("pull_policy: always"), "docker_runtime.pull_policy"),
    "pull-missing-when-never": Hostile(dr("pull_policy: missing"), "docker_runtime.pull_policy", {f"{RUNTIME}PULL_POLICY": "never"}),
    "gpus": Hostile(dr("gpus: all"), "docker_runtime.gpus"),
    "gpus-list": Hostile(dr("gpus: [0, 1]"), "docker_runtime.gpus"),
    "oom-kill-disable": Hostile(dr("oom_kill_disable: true"), "docker_runtime.oom_kill_disable"),
    "unlimited": Hostile(dr("limit_resource: false"), "docker_runtime.limit_resource"),
    "new-privileges": Hostile(dr("no_new_privileges: false"), "docker_runtime.no_new_privileges"),
    "writable-rootfs": Hostile(dr("read_only_rootfs: false"), "docker_runtime.read_only_rootfs"),
    "keep-container": Hostile(dr("remove_container_after_exit: false"), "docker_runtime.remove_container_after_exit"),
    "runtime": Hostile(dr("runtime: runc"), "docker_runtime.runtime"),
    "python-shell": Hostile(dr("python: /bin/sh"), "docker_runtime.python"),
    "extra-hosts": Hostile(dr("extra_hosts: {api.internal: 10.0.0.1}"), "docker_runtime.extra_hosts"),
    "extra-hosts-bad-address": Hostile(dr("extra_hosts: {api: not-an-ip}"), "docker_runtime.extra_hosts"),
    # Labels.
    "our-keep-label": Hostile(dr("labels: {airflow-docker-runtime.keep: 'true'}"), "docker_runtime.labels"),
    "our-owner-label": Hostile(dr("labels: {airflow-docker-runtime.worker: other-host}"), "docker_runtime.labels",
                               {f"{POLICY}ALLOWED_LABEL_PREFIXES": "airflow-docker-runtime."}),
    "traefik-label": Hostile(dr("labels: {traefik.enable: 'true'}"), "docker_runtime.labels"),
    "compose-label": Hostile(dr("labels: {com.docker.compose.project: x}"), "docker_runtime.labels"),
    "label-outside-prefix": Hostile(dr("labels: {traefik.enable: 'true'}"), "docker_runtime.labels",
                                    {f"{POLICY}ALLOWED_LABEL_PREFIXES": "com.example."}),
    # Operator-only keys.
    "cap-add": Hostile(dr("cap_add: [SYS_ADMIN]"), "docker_runtime.cap_add"),
    "socket-path": Hostile(dr("socket_path: 'tcp://evil:2375'"), "docker_runtime.socket_path"),
    "repository": Hostile(dr("container_repository: evil/x"), "docker_runtime.container_repository"),
    "host-environment": Hostile(dr("environment_variables_from_host: [AWS_SECRET_ACCESS_KEY]"),
                                "docker_runtime.environment_variables_from_host"),
    "fork-server": Hostile(dr("fork_server: true"), "docker_runtime.fork_server"),
    # Values Docker would refuse.
    "image-upper-case": Hostile(dr("image: Evil/Image"), "docker_runtime.image"),
    "image-space": Hostile(dr("image: 'a b'"), "docker_runtime.image"),
    "image-option": Hostile(dr("image: '--privileged'"), "docker_runtime.image"),
    "image-registry": Hostile(dr("image: evil.example.com/x:1"), "docker_runtime.image",
                              {f"{POLICY}ALLOWED_REGISTRIES": "registry.example.com"}),
    "env-name-with-equals": Hostile(dr("environments: {'A=B': x}"), "docker_runtime.environments"),
    "env-value-nul": Hostile(dr('environments: {A: "x\\0y"}'), "docker_runtime.environments"),
    "memory-mapping": Hostile(dr("memory: {a: 1}"), "docker_runtime.memory"),
    "unknown-key": Hostile(dr("memroy: 1g"), "docker_runtime.memroy"),
    # The reader.
    "alias-bomb": Hostile(BOMB, "a"),
    "anchor": Hostile(dr("memory: &m 512m"), "docker_runtime.memory"),
    "deep-nesting": Hostile("docker_runtime:\n  labels: " + "[" * 5000 + "]" * 5000 + "\n", "docker_runtime.labels[0][0][0][0][0][0][0]"),
    "duplicate-key": Hostile(dr("memory: 512m", "memory: 64g"), "docker_runtime.memory"),
    "duplicate-top-level": Hostile("docker_runtime: {}\ndocker_runtime: {privileged: true}\n", "docker_runtime"),
    "python-tag": Hostile("docker_runtime: !!python/object/apply:os.system ['id']\n", "docker_runtime"),
    "binary-tag": Hostile(dr("image: !!binary YWRyLXRlc3QvYmFzZQ=="), "docker_runtime.image"),
    "merge-key": Hostile("docker_runtime:\n  <<: {privileged: true}\n", "docker_runtime.<<"),
    "mapping-as-key": Hostile("? {a: 1}\n: 1\n", "<top level>"),
    "top-level-list": Hostile("- docker_runtime\n", "<top level>"),
    "over-64kib": Hostile("docker_runtime: {}\n" + "#" * 70000, "<file>"),
    "not-utf8": Hostile(b"docker_runtime:\n  image: \xff\n", "<file>"),
    "two-documents": Hostile("docker_runtime: {}\n---\ndocker_runtime: {privileged: true}\n", "<file>"),
    "symlink-outside-folder": Hostile(_symlink_outside, "<file>"),
    "fifo": Hostile(_fifo, "<file>"),
    # Per-task overrides (a task reads them; parsing never does).
    "task-privileged": Hostile("tasks:\n  t1:\n    docker_runtime: {privileged: true}\n", "tasks.t1.docker_runtime.privileged", task_only=True),
    "task-root": Hostile("tasks:\n  t1:\n    docker_runtime: {run_as_user: root}\n", "tasks.t1.docker_runtime.run_as_user", task_only=True),
    "task-memory": Hostile("tasks:\n  t1:\n    docker_runtime: {memory: 8g}\n", "tasks.t1.docker_runtime.memory", task_only=True),
    "task-not-a-mapping": Hostile("tasks:\n  t1: [privileged]\n", "tasks.t1"),
}


@pytest.fixture(scope="module")
def proxy() -> Iterator[DockerProxy]:
    directory = Path(tempfile.mkdtemp(prefix="adr-proxy-"))
    with DockerProxy(directory / "docker.sock") as running:
        yield running
    directory.rmdir()


@pytest.fixture
def operator(monkeypatch: pytest.MonkeyPatch, proxy: DockerProxy) -> Callable[[dict[str, str]], None]:
    """Airflow configured as an operator would: docker parsing, an image, the proxy as the daemon."""

    def configure(extra: dict[str, str]) -> None:
        for name in [n for n in os.environ if n.startswith(("AIRFLOW__DOCKER_RUNTIME", "AIRFLOW__TASK_EXECUTION", "AIRFLOW__SCHEDULER_DAG"))]:
            monkeypatch.delenv(name)
        settings = {
            f"{RUNTIME}SCHEDULER_DAG_PARSING_RUNTIME": "docker",
            f"{RUNTIME}TASK_EXECUTION_RUNTIME": "docker",
            f"{RUNTIME}CONTAINER_REPOSITORY": "adr-test/base",
            f"{RUNTIME}SOCKET_PATH": proxy.url,
            "AIRFLOW__SCHEDULER_DAG_PARSING_DOCKER_RUNTIME__FORK_SERVER": "False",
            **extra,
        }
        for name, value in settings.items():
            monkeypatch.setenv(name, value)

    return configure


def write_case(directory: Path, case: Hostile) -> tuple[Path, Path]:
    directory.mkdir(parents=True)
    dag = directory / "hostile.py"
    dag.write_text("import airflow.providers.standard.sensors.filesystem  # named, never imported on the host\n")
    sidecar = sidecar_path(dag)
    if callable(case.sidecar):
        case.sidecar(sidecar)
    elif isinstance(case.sidecar, bytes):
        sidecar.write_bytes(case.sidecar)
    else:
        sidecar.write_text(case.sidecar)
    return dag, sidecar


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_sidecar_is_refused_before_any_docker_call(name, tmp_path, proxy, operator):
    from airflow_docker_runtime.parsing.command import parse_file

    case = HOSTILE[name]
    operator(case.operator)
    dag, sidecar = write_case(tmp_path / "dags", case)
    expected = f"{sidecar}: key '{case.key}'"
    before = proxy.count()

    with pytest.raises(RuntimeSpecError) as info:
        resolve(dag, purpose="task", task_id="t1")  # what a task try does first
    assert str(info.value).startswith(expected), str(info.value)
    assert len(str(info.value)) < 600  # an excerpt of a bad value, never the value

    if not case.task_only:
        result, _, log = parse_file(dag, timeout=60)  # what `airflow docker-runtime parse` and the DAG processor do
        (error,) = result.import_errors.values()
        assert error.startswith(f"Docker runtime: ") and expected in error, error
        assert "Traceback" not in error and "pre-import" not in log

    assert proxy.count() == before, [(r.method, r.path) for r in proxy.requests[before:]]


def test_there_are_at_least_sixty_hostile_cases():
    assert len(HOSTILE) >= 60


def test_positive_control_an_accepted_sidecar_goes_through_the_proxy(tmp_path, proxy, operator):
    """The same path with a sidecar the policy accepts: the proxy sees the Docker calls, the file parses."""
    from airflow_docker_runtime.parsing.command import parse_file

    operator({})
    dag, _ = write_case(tmp_path / "dags", Hostile(dr(f"image: {IMAGE}", "memory: 512m", "network_mode: none"), ""))
    dag.write_text("from airflow.sdk import DAG\nwith DAG('control', schedule=None):\n    pass\n")
    before = proxy.count()
    result, _, log = parse_file(dag, timeout=120)
    assert result is not None and not result.import_errors, log
    assert [d.dag_id for d in result.serialized_dags] == ["control"]
    assert proxy.count() > before
    (create,) = proxy.creates()[-1:]
    assert create.json()["HostConfig"]["Memory"] == 512 * 1024**2


REPORTER_SCRIPT = """
import sys
from pathlib import Path
from airflow_docker_runtime.parsing.command import parse_file
module = "airflow.providers.standard.sensors.filesystem"
assert module not in sys.modules
result, _, log = parse_file(Path(sys.argv[1]), 60, in_container=sys.argv[2] == "docker")
print(module in sys.modules, "pre-import" in log, sorted(result.import_errors))
"""


@pytest.mark.parametrize(("runtime", "imported"), [("docker", False), ("native", True)])
def test_a_refused_file_imports_nothing_it_names_on_the_host(tmp_path, proxy, runtime, imported):
    """Issue 11, part 7. The native parse is the control: upstream pre-imports the module in the
    processor; the error reporter of a refused file must not."""
    dag, _ = write_case(tmp_path / "dags", HOSTILE["privileged"])
    dag.write_text(dag.read_text() + "import airflow.adr_refused_marker_that_does_not_exist\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update({f"{RUNTIME}SCHEDULER_DAG_PARSING_RUNTIME": "docker", f"{RUNTIME}CONTAINER_REPOSITORY": "adr-test/base",
                f"{RUNTIME}SOCKET_PATH": proxy.url, "AIRFLOW_HOME": str(tmp_path / "home")})
    before = proxy.count()
    out = subprocess.run([sys.executable, "-c", REPORTER_SCRIPT, str(dag), runtime], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    module_imported, pre_import_logged, _ = out.stdout.strip().splitlines()[-1].split(" ", 2)
    assert (module_imported, pre_import_logged) == (str(imported), str(imported))
    assert proxy.count() == before
