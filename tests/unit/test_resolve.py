"""The precedence chain: from built-in defaults to the image hook, with provenance, and every way to get it wrong."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_docker_runtime.errors import PolicyViolation, RuntimeSpecError
from airflow_docker_runtime.layers import runtime_flag, sidecar_path
from airflow_docker_runtime.spec import Volume
from tests.unit.factories import BASE_CONFIG, REPOSITORY, resolve_with, tree, write_dag

GIB = 1024**3
HOOK_SOURCE = "get_docker_runtime_image() in airflow_local_settings.py"

# -- the full chain ---------------------------------------------------------------------------------

LEVELS = ("default", "base", "purpose", "coordinator", "volume_file", "sidecar", "task", "hook")
"""The layers in precedence order, earliest first (resolve.py's docstring, minus the policy check)."""


def _chain_inputs(tmp_path: Path, top: str) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """A DAG file, airflow.cfg and resolve() kwargs with every layer up to ``top`` setting something."""
    on = lambda level: LEVELS.index(level) <= LEVELS.index(top)  # noqa: E731
    config: dict[str, dict[str, Any]] = {
        "docker_runtime": {"container_repository": "reg/base"},
        # The sidecar layers below ask for more than the operator set: the policy lets them.
        "docker_runtime_policy": {"max_stop_timeout": "10", "allowed_volumes": "vol-sidecar,vol-task"},
    }
    kwargs: dict[str, Any] = {"task_id": "t1", "coordinator_name": "q"}
    sidecar: dict[str, Any] = {}
    if on("base"):
        config["docker_runtime"]["stop_timeout"] = "1"
        config["docker_runtime_environment_variables"] = {"winner": "base", "only_base": "1"}
    if on("purpose"):
        config["task_execution_docker_runtime"] = {"stop_timeout": "2", "container_tag": "purpose"}
        config["task_execution_docker_runtime_environment_variables"] = {"winner": "purpose", "only_purpose": "1"}
    if on("coordinator"):
        kwargs["coordinator_options"] = {"stop_timeout": 3, "image": "reg/coordinator:1", "volumes": ["vol-coordinator:/data"],
                                         "environments": {"WINNER": "coordinator", "ONLY_COORDINATOR": "1"}}
    if on("volume_file"):
        volume_file = tmp_path / "volumes.yaml"
        volume_file.write_text("volumes:\n  - vol-file:/data\n")
        config["docker_runtime"]["volume_mount_yaml"] = str(volume_file)
    if on("sidecar"):
        sidecar["docker_runtime"] = {"stop_timeout": 5, "image": "reg/sidecar:1", "volumes": ["vol-sidecar:/data"],
                                     "environments": {"WINNER": "sidecar", "ONLY_SIDECAR": "1"}}
    if on("task"):
        sidecar["tasks"] = {"t1": {"docker_runtime": {"stop_timeout": 6, "image": "reg/task:1", "volumes": ["vol-task:/data"],
                                                      "environments": {"WINNER": "task", "ONLY_TASK": "1"}}}}
    if on("hook"):
        kwargs["hook"] = lambda image: f"mirror.example.com/{image}"
    dag = write_dag(tmp_path / "dags", json.dumps(sidecar) if sidecar else None)
    return dag, config, kwargs


def _expected(tmp_path: Path, top: str) -> dict[str, tuple[Any, str]]:
    """For each checked key: the value and the ``sources`` entry when ``top`` is the latest layer present."""
    sidecar = f"sidecar {sidecar_path(tmp_path / 'dags' / 'x.py')}"
    volume_file = f"volume_mount_yaml {tmp_path / 'volumes.yaml'}"
    rows = {
        # level: (stop_timeout, its source, /data volume source, its source, image, its source, environments source)
        "default": (20, "default", None, None, "reg/base:latest", "[docker_runtime] + default", None),
        "base": (1, "[docker_runtime]", None, None, "reg/base:latest", "[docker_runtime] + default",
                 "[docker_runtime_environment_variables]"),
        "purpose": (2, "[task_execution_docker_runtime]", None, None, "reg/base:purpose",
                    "[docker_runtime] + [task_execution_docker_runtime]", "[task_execution_docker_runtime_environment_variables]"),
        "coordinator": (3, "[sdk] coordinators q", "vol-coordinator", "[sdk] coordinators q", "reg/coordinator:1",
                        "[sdk] coordinators q", "[sdk] coordinators q"),
        "volume_file": (None, None, "vol-file", volume_file, None, None, None),
        "sidecar": (5, sidecar, "vol-sidecar", sidecar, "reg/sidecar:1", sidecar, sidecar),
        "task": (6, f"{sidecar} tasks.t1", "vol-task", f"{sidecar} tasks.t1", "reg/task:1", f"{sidecar} tasks.t1",
                 f"{sidecar} tasks.t1"),
        "hook": (None, None, None, None, "HOOK", HOOK_SOURCE, None),
    }
    stop, stop_src, volume, volume_srcs, image, image_src, env_srcs, winner = None, None, None, [], None, None, [], None
    for level in LEVELS[: LEVELS.index(top) + 1]:
        row = rows[level]
        if row[0] is not None:
            stop, stop_src = row[0], row[1]
        if row[2] is not None:
            volume = row[2]
            volume_srcs.append(row[3])
        if row[4] == "HOOK":
            image, image_src = f"mirror.example.com/{image}", row[5]
        elif row[4] is not None:
            image, image_src = row[4], row[5]
        if row[6] is not None:
            env_srcs.append(row[6])
            winner = level
    return {
        "stop_timeout": (stop, stop_src),
        "volumes": ((Volume(source=volume, target="/data"),) if volume else (), " + ".join(volume_srcs) or None),
        "image": (image, image_src),
        "winner": (winner.upper() if winner else None, " + ".join(env_srcs) or None),
    }


@pytest.mark.parametrize("top", LEVELS)
def test_precedence_chain_later_layer_wins_with_provenance(tmp_path, top):
    dag, config, kwargs = _chain_inputs(tmp_path, top)
    resolution = resolve_with(dag, config, **kwargs)
    spec, sources = resolution.spec, resolution.sources
    expected = _expected(tmp_path, top)

    assert (spec.stop_timeout, sources["stop_timeout"]) == expected["stop_timeout"]
    assert (spec.volumes, sources.get("volumes")) == expected["volumes"]
    assert (spec.image, sources["image"]) == expected["image"]
    winner, env_sources = expected["winner"]
    assert spec.environments.get("WINNER", "").upper() == (winner or "")
    assert sources.get("environments") == env_sources
    # Merged by key: every layer's own variable survives.
    only = {k for k in spec.environments if k.startswith("ONLY_")}
    assert only == {f"ONLY_{level.upper()}" for level in ("base", "purpose", "coordinator", "sidecar", "task")
                    if LEVELS.index(level) <= LEVELS.index(top)}
    assert resolution.sidecar == (sidecar_path(dag) if LEVELS.index(top) >= LEVELS.index("sidecar") else None)


def test_untouched_keys_come_from_the_defaults(tmp_path):
    resolution = resolve_with(write_dag(tmp_path))
    assert resolution.sources["pull_policy"] == "default"
    assert resolution.spec.pull_policy == "missing"
    assert resolution.spec.remove_container_after_exit is True
    assert resolution.spec.limit_resource is True
    # The operator-only inputs of the image are folded into "image" and not reported on their own.
    assert not {"container_repository", "container_tag", "volume_mount_yaml"} & set(resolution.sources)


def test_parsing_uses_the_parsing_section_and_never_a_task_override(tmp_path):
    config = {
        "docker_runtime": {"container_repository": "reg/base", "memory": "1g"},
        "task_execution_docker_runtime": {"memory": "2g"},
        "scheduler_dag_parsing_docker_runtime": {"memory": "3g"},
        "scheduler_dag_parsing_docker_runtime_labels": {"role": "parser"},
        "docker_runtime_policy": {"max_memory": "4g"},
    }
    dag = write_dag(tmp_path, "tasks:\n  t1:\n    docker_runtime: {memory: 4g}\n")
    parse = resolve_with(dag, config, purpose="parse", task_id="t1")
    assert (parse.spec.memory, parse.sources["memory"]) == (3 * GIB, "[scheduler_dag_parsing_docker_runtime]")
    assert parse.spec.labels == {"role": "parser"}
    task = resolve_with(dag, config, purpose="task", task_id="t1")
    assert (task.spec.memory, task.sources["memory"]) == (4 * GIB, f"sidecar {sidecar_path(dag)} tasks.t1")
    assert task.spec.labels == {}


def test_task_override_applies_only_to_its_task(tmp_path):
    dag = write_dag(tmp_path, "docker_runtime: {memory: 1g}\ntasks:\n  heavy:\n    docker_runtime: {memory: 4g}\n")
    config = {**BASE_CONFIG, "docker_runtime_policy": {"max_memory": "4g"}}
    assert resolve_with(dag, config, task_id="heavy").spec.memory == 4 * GIB
    assert resolve_with(dag, config, task_id="light").spec.memory == 1 * GIB
    assert resolve_with(dag, config, task_id=None).spec.memory == 1 * GIB


def test_empty_value_in_an_override_section_inherits(tmp_path):
    config = {
        "docker_runtime": {"container_repository": "reg/base", "memory": "1g", "network_mode": "none", "run_as_user": "50000"},
        "task_execution_docker_runtime": {"memory": "", "network_mode": "", "run_as_user": "1000"},
    }
    resolution = resolve_with(write_dag(tmp_path), config)
    assert (resolution.spec.memory, resolution.sources["memory"]) == (GIB, "[docker_runtime]")
    assert (resolution.spec.network_mode, resolution.sources["network_mode"]) == ("none", "[docker_runtime]")
    assert (resolution.spec.run_as_user, resolution.sources["run_as_user"]) == ("1000", "[task_execution_docker_runtime]")


def test_environment_sections_are_upper_cased_and_sidecar_names_kept(tmp_path):
    config = {**BASE_CONFIG, "docker_runtime_environment_variables": {"aws_region": "eu-west-1"},
              "task_execution_docker_runtime_environment_variables": {"log_format": "json"}}
    dag = write_dag(tmp_path, "docker_runtime:\n  environments: {mixed_Case: '1', AWS_REGION: us-east-1}\n")
    spec = resolve_with(dag, config).spec
    assert spec.environments == {"AWS_REGION": "us-east-1", "LOG_FORMAT": "json", "mixed_Case": "1"}


@pytest.mark.parametrize(
    ("key", "config_value", "sidecar_value", "merged"),
    [
        ("labels", "team=data, tier=gold", "{tier: silver, app: etl}", {"team": "data", "tier": "silver", "app": "etl"}),
        ("extra_hosts", "db=10.0.0.1, cache=10.0.0.2", "{cache: 10.0.0.9, api: 10.0.0.3}",
         {"db": "10.0.0.1", "cache": "10.0.0.9", "api": "10.0.0.3"}),
        ("environments", "A=1, B=1", "{B: 2, C: 2}", {"A": "1", "B": "2", "C": "2"}),
    ],
)
def test_mapping_keys_merge_by_key_through_resolve(tmp_path, key, config_value, sidecar_value, merged):
    config = {"docker_runtime": {**BASE_CONFIG["docker_runtime"], key: config_value},
              "docker_runtime_policy": {"allowed_label_prefixes": "tier,app", "allow_extra_hosts": "true"}}
    dag = write_dag(tmp_path, f"docker_runtime:\n  {key}: {sidecar_value}\n")
    resolution = resolve_with(dag, config)
    assert getattr(resolution.spec, key) == merged
    assert resolution.sources[key] == f"[docker_runtime] + sidecar {sidecar_path(dag)}"


def test_volumes_merge_by_target_through_resolve(tmp_path):
    volume_file = tmp_path / "volumes.yaml"
    volume_file.write_text("- /srv/shared:/shared:ro\n- /srv/models:/models:ro\n")
    config = {"docker_runtime": {**BASE_CONFIG["docker_runtime"], "volume_mount_yaml": str(volume_file)},
              "docker_runtime_policy": {"allowed_volumes": "models-v2,scratch"}}
    dag = write_dag(tmp_path / "dags", "docker_runtime:\n  volumes: ['models-v2:/models', 'scratch:/scratch']\n")
    resolution = resolve_with(dag, config)
    assert [str(v) for v in resolution.spec.volumes] == ["/srv/shared:/shared:ro", "models-v2:/models:rw", "scratch:/scratch:rw"]
    assert resolution.sources["volumes"] == f"volume_mount_yaml {volume_file} + sidecar {sidecar_path(dag)}"


def test_scalars_replace_through_resolve(tmp_path):
    config = {"docker_runtime": {**BASE_CONFIG["docker_runtime"], "memory": "1g", "cpus": "2", "pull_policy": "always"}}
    dag = write_dag(tmp_path, "docker_runtime: {memory: 512m, pull_policy: never}\n")
    spec = resolve_with(dag, config).spec
    assert (spec.memory, spec.cpus, spec.pull_policy) == (512 * 1024**2, 2.0, "never")


# -- the image ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("docker_runtime", "image", "source"),
    [
        ({"container_repository": "reg/base"}, "reg/base:latest", "[docker_runtime] + default"),
        ({"container_repository": "reg/base", "container_tag": "3.3"}, "reg/base:3.3", "[docker_runtime]"),
        ({"container_repository": "reg/base", "container_tag": ""}, "reg/base:latest", "[docker_runtime] + default"),
    ],
)
def test_image_from_container_repository_and_tag(tmp_path, docker_runtime, image, source):
    resolution = resolve_with(write_dag(tmp_path), {"docker_runtime": docker_runtime})
    assert (resolution.spec.image, resolution.sources["image"]) == (image, source)


def test_sidecar_image_wins_over_repository_and_tag(tmp_path):
    config = {"docker_runtime": {"container_repository": "reg/base", "container_tag": "1"}}
    dag = write_dag(tmp_path, "docker_runtime:\n  image: reg/app@sha256:" + "a" * 64 + "\n")
    resolution = resolve_with(dag, config)
    assert resolution.spec.image == "reg/app@sha256:" + "a" * 64
    assert resolution.sources["image"] == f"sidecar {sidecar_path(dag)}"


def test_sidecar_image_without_any_operator_image(tmp_path):
    assert resolve_with(write_dag(tmp_path, "docker_runtime: {image: 'reg/app:2'}\n"), {}).spec.image == "reg/app:2"


@pytest.mark.parametrize(("sidecar", "source", "key"), [(None, "[docker_runtime]", "container_repository"),
                                                        ("docker_runtime: {memory: 1g}\n", "SIDECAR", "image")])
def test_no_image_at_all_is_an_error(tmp_path, sidecar, source, key):
    dag = write_dag(tmp_path, sidecar)
    with pytest.raises(RuntimeSpecError, match="no image: set docker_runtime.image") as info:
        resolve_with(dag, {"docker_runtime": {"container_tag": "1"}})
    assert (info.value.source, info.value.key) == (str(sidecar_path(dag)) if source == "SIDECAR" else source, key)


@pytest.mark.parametrize("where", ["sidecar", "coordinator"])
def test_empty_image_is_not_an_image(tmp_path, where):
    dag = write_dag(tmp_path, "docker_runtime: {image: ''}\n" if where == "sidecar" else None)
    try:
        resolution = resolve_with(dag, coordinator_options={"image": ""} if where == "coordinator" else None)
    except RuntimeSpecError as exc:
        assert exc.key.endswith("image")
    else:
        assert resolution.spec.image == f"{REPOSITORY}:latest"


def test_image_hook_sees_the_resolved_image_and_wins(tmp_path):
    seen = []

    def hook(image: str) -> str:
        seen.append(image)
        return "mirror.example.com/" + image

    dag = write_dag(tmp_path, "docker_runtime: {image: 'reg/app:1'}\n")
    resolution = resolve_with(dag, hook=hook)
    assert seen == ["reg/app:1"]
    assert (resolution.spec.image, resolution.sources["image"]) == ("mirror.example.com/reg/app:1", HOOK_SOURCE)


def test_image_hook_returning_the_same_image_keeps_the_provenance(tmp_path):
    dag = write_dag(tmp_path, "docker_runtime: {image: 'reg/app:1'}\n")
    resolution = resolve_with(dag, hook=lambda image: image)
    assert resolution.sources["image"] == f"sidecar {sidecar_path(dag)}"


@pytest.mark.parametrize("returned", [None, 42, "", b"reg/app:1", ["reg/app:1"]])
def test_image_hook_returning_a_non_string_is_an_error(tmp_path, returned):
    with pytest.raises(RuntimeSpecError, match="must return an image name") as info:
        resolve_with(write_dag(tmp_path), hook=lambda image: returned)
    assert (info.value.source, info.value.key) == ("airflow_local_settings.py", "get_docker_runtime_image")


# -- bad inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """One bad input and where its error must point: ``source`` is SIDECAR, VOLUME_FILE or a section name."""

    key: str
    sidecar: str | bytes | None = None
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "SIDECAR"
    volume_file: str | None = None
    coordinator: dict[str, Any] | None = None
    hook: Callable[[str], Any] | None = None
    purpose: str = "task"
    call: str = "resolve"
    error: type[RuntimeSpecError] = RuntimeSpecError


def dr(body: str) -> str:
    """A sidecar with one ``docker_runtime:`` line."""
    return f"docker_runtime:\n  {body}\n"


POLICY = PolicyViolation
BAD_INPUTS = {
    "unknown-top-level-key": Bad("docker_runtim", "docker_runtim:\n  image: x\n"),
    "unknown-docker-runtime-key": Bad("docker_runtime.memroy", dr("memroy: 1g")),
    "memory-as-list": Bad("docker_runtime.memory", dr("memory: [1g]")),
    "memory-lots": Bad("docker_runtime.memory", dr("memory: lots")),
    "memory-negative": Bad("docker_runtime.memory", dr("memory: -512m")),
    "memory-zero": Bad("docker_runtime.memory", dr("memory: 0")),
    "stop-timeout-soon": Bad("docker_runtime.stop_timeout", dr("stop_timeout: soon")),
    "cpus-zero": Bad("docker_runtime.cpus", dr("cpus: 0")),
    "pids-limit-negative": Bad("docker_runtime.pids_limit", dr("pids_limit: -1")),
    "volume-without-colon": Bad("docker_runtime.volumes", dr("volumes: [a]")),
    "volume-bad-mode": Bad("docker_runtime.volumes", dr("volumes: ['a:b:rx']")),
    "volume-relative-target": Bad("docker_runtime.volumes", dr("volumes: ['cache:data']")),
    "volume-long-form-unknown-key": Bad("docker_runtime.volumes", dr("volumes: [{source: cache, target: /c, mode: ro}]")),
    "volumes-not-a-list": Bad("docker_runtime.volumes", dr("volumes: cache:/c")),
    "environments-as-list": Bad("docker_runtime.environments", dr("environments: [A=1]")),
    "environments-nested": Bad("docker_runtime.environments", dr("environments: {A: {B: 1}}")),
    "labels-as-string": Bad("docker_runtime.labels", dr("labels: team")),
    "gpus-many": Bad("docker_runtime.gpus", dr("gpus: many")),
    "pull-policy-sometimes": Bad("docker_runtime.pull_policy", dr("pull_policy: sometimes")),
    "network-mode-host": Bad("docker_runtime.network_mode", dr("network_mode: host"), error=POLICY),
    "network-mode-container": Bad("docker_runtime.network_mode", dr("network_mode: 'container:db'"), error=POLICY),
    "privileged": Bad("docker_runtime.privileged", dr("privileged: true"), error=POLICY),
    "mount-docker-socket": Bad("docker_runtime.mount_docker_socket", dr("mount_docker_socket: true"), error=POLICY),
    "oom-kill-disable": Bad("docker_runtime.oom_kill_disable", dr("oom_kill_disable: true"), error=POLICY),
    "limit-resource-false": Bad("docker_runtime.limit_resource", dr("limit_resource: false"), error=POLICY),
    "host-path-volume": Bad("docker_runtime.volumes", dr("volumes: ['/etc:/host-etc:ro']"), error=POLICY),
    "image-outside-registries": Bad("docker_runtime.image", dr("image: 'evil.example.com/x:1'"), error=POLICY,
                                    config={"docker_runtime_policy": {"allowed_registries": "registry.example.com"}}),
    "memory-above-max": Bad("docker_runtime.memory", dr("memory: 8g"), error=POLICY,
                            config={"docker_runtime_policy": {"max_memory": "4g"}}),
    "tasks-not-a-mapping": Bad("tasks", "tasks: [t1]\n"),
    "task-unknown-key": Bad("tasks.t1.docker_runtime.memroy", "tasks:\n  t1:\n    docker_runtime:\n      memroy: 1g\n"),
    "task-without-docker-runtime": Bad("tasks.t1", "tasks:\n  t1:\n    image: x\n"),
    "task-privileged": Bad("tasks.t1.docker_runtime.privileged", "tasks:\n  t1:\n    docker_runtime: {privileged: true}\n",
                           error=POLICY),
    "invalid-yaml-tab": Bad("<file>", "docker_runtime:\n\timage: x\n"),
    "invalid-yaml-unclosed": Bad("<file>", "docker_runtime: {image: x\n"),
    "top-level-list": Bad("<top level>", "- docker_runtime\n"),
    "top-level-scalar": Bad("<top level>", "just a string\n"),
    "over-64kib": Bad("<file>", "docker_runtime: {}\n" + "#" * (64 * 1024)),
    "non-utf8": Bad("<file>", b"docker_runtime:\n  image: \xff\xfe\x80\n"),
    "python-tag": Bad("docker_runtime", 'docker_runtime: !!python/object/apply:os.system ["touch {marker}"]\n'),
    "socket-path-in-sidecar": Bad("docker_runtime.socket_path", dr("socket_path: 'tcp://evil:2375'")),
    "container-tag-in-sidecar": Bad("docker_runtime.container_tag", dr("container_tag: x")),
    "host-env-in-sidecar": Bad("docker_runtime.environment_variables_from_host", dr("environment_variables_from_host: [PATH]")),
    "extra-hosts-malformed-config": Bad("extra_hosts", source="[docker_runtime]",
                                        config={"docker_runtime": {"extra_hosts": "nohostip"}}),
    "unknown-key-in-config": Bad("memroy", source="[docker_runtime]", config={"docker_runtime": {"memroy": "1g"}}),
    "bad-memory-in-purpose-section": Bad("memory", source="[task_execution_docker_runtime]",
                                         config={"task_execution_docker_runtime": {"memory": "lots"}}),
    "bad-cpus-in-parsing-section": Bad("cpus", source="[scheduler_dag_parsing_docker_runtime]", purpose="parse",
                                       config={"scheduler_dag_parsing_docker_runtime": {"cpus": "0"}}),
    "bad-policy-key": Bad("allow_everything", "docker_runtime: {}\n", source="[docker_runtime_policy]",
                          config={"docker_runtime_policy": {"allow_everything": "true"}}),
    "bad-policy-max-memory": Bad("max_memory", "docker_runtime: {}\n", source="[docker_runtime_policy]",
                                 config={"docker_runtime_policy": {"max_memory": "lots"}}),
    "bad-task-execution-runtime-flag": Bad("task_execution_runtime", source="[docker_runtime]", call="runtime_flag",
                                           config={"docker_runtime": {"task_execution_runtime": "container"}}),
    "airflow-secret-from-host-in-config": Bad("environment_variables_from_host", source="[docker_runtime]", error=POLICY,
                                              config={"docker_runtime": {"environment_variables_from_host": "AIRFLOW__CORE__FERNET_KEY"}}),
    "coordinator-typo": Bad("memroy", source="[sdk] coordinators", coordinator={"memroy": "1g"}),
    "volume-file-bad-entry": Bad("volumes", source="VOLUME_FILE", volume_file="- nocolon\n"),
    "volume-file-unknown-key": Bad("mounts", source="VOLUME_FILE", volume_file="mounts: []\n"),
    "volume-file-missing": Bad("<file>", source="VOLUME_FILE"),
    "image-hook-non-string": Bad("get_docker_runtime_image", source="airflow_local_settings.py", hook=lambda image: None),
    "no-image": Bad("container_repository", source="[docker_runtime]", config={"docker_runtime": {"container_repository": ""}}),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_input_names_file_and_key(tmp_path, case: Bad):
    marker = tmp_path / "command-ran"
    sidecar = case.sidecar.replace("{marker}", str(marker)) if isinstance(case.sidecar, str) else case.sidecar
    dag = write_dag(tmp_path / "dags", sidecar)
    volume_file = tmp_path / "volumes.yaml"
    if case.volume_file is not None:
        volume_file.write_text(case.volume_file)
    config = {section: dict(values) for section, values in BASE_CONFIG.items()}
    for section, values in case.config.items():
        config.setdefault(section, {}).update(values)
    if case.source == "VOLUME_FILE":
        config["docker_runtime"]["volume_mount_yaml"] = str(volume_file)
    source = {"SIDECAR": str(sidecar_path(dag)), "VOLUME_FILE": str(volume_file)}.get(case.source, case.source)
    before = tree(tmp_path)

    with pytest.raises(case.error) as info:
        if case.call == "runtime_flag":
            runtime_flag(case.purpose, config.get)  # type: ignore[arg-type]
        else:
            resolve_with(dag, config, purpose=case.purpose, task_id="t1", coordinator_options=case.coordinator, hook=case.hook)

    error = info.value
    assert isinstance(error, RuntimeSpecError)
    assert (error.source, error.key) == (source, case.key)
    assert source in str(error) and f"'{case.key}'" in str(error)
    assert tree(tmp_path) == before  # nothing created; no Docker client either (see conftest.no_docker)
    assert not marker.exists()


def test_runtime_errors_survive_pickling():
    """A LocalExecutor worker sends a failed workload's exception to the scheduler through a queue."""
    import pickle

    from airflow_docker_runtime.errors import PolicyViolation

    error = pickle.loads(pickle.dumps(PolicyViolation("dags/etl.py.metadata.yaml", "docker_runtime.privileged", "no")))
    assert isinstance(error, PolicyViolation)
    assert (error.source, error.key, str(error)) == ("dags/etl.py.metadata.yaml", "docker_runtime.privileged",
                                                     "dags/etl.py.metadata.yaml: key 'docker_runtime.privileged': no")


def test_purpose_defaults_survive_airflow_cfg_defaults():
    """Airflow's configuration lists the provider's defaults as values of [docker_runtime]: a key whose
    built-in default differs by purpose must have none there, or it overrides the purpose's default."""
    from airflow_docker_runtime.provider import config_sections
    from airflow_docker_runtime.resolve import operator_setting
    from airflow_docker_runtime.spec import PURPOSE_DEFAULTS

    options = config_sections()["docker_runtime"]["options"]
    for defaults in PURPOSE_DEFAULTS.values():
        for key in defaults:
            assert options[key]["default"] is None, key
    assert operator_setting("fork_server", "parse") is True  # through Airflow's real configuration
    assert operator_setting("fork_server", "task") is False
