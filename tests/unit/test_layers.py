"""Reading layers: airflow.cfg sections, the feature flags, YAML files, sidecars and the volume file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from airflow_docker_runtime.errors import RuntimeSpecError
from airflow_docker_runtime.layers import (
    MAX_YAML_BYTES,
    config_layers,
    host_environment,
    layer_from_mapping,
    load_sidecar,
    read_yaml_file,
    runtime_flag,
    sidecar_path,
    volume_file_layer,
)
from airflow_docker_runtime.spec import OPERATOR_ONLY_KEYS, RuntimeOptions, Volume
from tests.unit.factories import write_dag

MIB = 1024**2

FULL_CONFIG = {
    "docker_runtime": {"container_repository": "reg/base", "memory": "1g", "task_execution_runtime": "docker",
                       "scheduler_dag_parsing_runtime": "native"},
    "docker_runtime_environment_variables": {"base_var": "b"},
    "task_execution_docker_runtime": {"memory": "2g", "task_execution_runtime": "docker"},
    "task_execution_docker_runtime_environment_variables": {"task_var": "t"},
    "task_execution_docker_runtime_labels": {"team": "data"},
    "scheduler_dag_parsing_docker_runtime": {"memory": "3g"},
    "scheduler_dag_parsing_docker_runtime_environment_variables": {"parse_var": "p"},
    "scheduler_dag_parsing_docker_runtime_labels": {"role": "parser"},
}


def test_config_layers_for_tasks_in_order():
    layers = config_layers("task", FULL_CONFIG.get)
    assert [source for source, _ in layers] == [
        "[docker_runtime]",
        "[docker_runtime_environment_variables]",
        "[task_execution_docker_runtime]",
        "[task_execution_docker_runtime_environment_variables]",
        "[task_execution_docker_runtime_labels]",
    ]
    by_source = dict(layers)
    assert by_source["[docker_runtime]"].memory == 1024 * MIB
    assert by_source["[task_execution_docker_runtime]"].memory == 2048 * MIB
    assert by_source["[task_execution_docker_runtime_environment_variables]"].environments == {"TASK_VAR": "t"}
    assert by_source["[task_execution_docker_runtime_labels]"].labels == {"team": "data"}


def test_config_layers_for_parsing_ignore_the_task_sections():
    layers = config_layers("parse", FULL_CONFIG.get)
    assert [source for source, _ in layers] == [
        "[docker_runtime]",
        "[docker_runtime_environment_variables]",
        "[scheduler_dag_parsing_docker_runtime]",
        "[scheduler_dag_parsing_docker_runtime_environment_variables]",
        "[scheduler_dag_parsing_docker_runtime_labels]",
    ]
    assert dict(layers)["[scheduler_dag_parsing_docker_runtime]"].memory == 3072 * MIB


def test_config_layers_with_nothing_configured_are_empty_layers():
    layers = config_layers("task", {}.get)
    assert [(source, layer.set_fields()) for source, layer in layers] == [
        ("[docker_runtime]", {}),
        ("[task_execution_docker_runtime]", {}),
    ]


def test_environment_section_names_are_upper_cased_values_kept():
    # Airflow lower-cases option names; environment variables are conventionally upper case.
    layers = dict(config_layers("task", {"docker_runtime_environment_variables": {"my_var": "MixedCase value"}}.get))
    assert layers["[docker_runtime_environment_variables]"].environments == {"MY_VAR": "MixedCase value"}


def test_option_names_are_case_insensitive():
    layer = dict(config_layers("task", {"docker_runtime": {"Memory": "1g", "NETWORK_MODE": "none"}}.get))["[docker_runtime]"]
    assert layer.set_fields() == {"memory": 1024 * MIB, "network_mode": "none"}


def test_empty_values_are_not_set_so_override_sections_inherit():
    config = {"task_execution_docker_runtime": {"memory": "", "network_mode": "", "cpus": None, "labels": ""},
              "task_execution_docker_runtime_labels": {"team": ""}}
    layers = config_layers("task", config.get)
    assert [(source, layer.set_fields()) for source, layer in layers] == [
        ("[docker_runtime]", {}),
        ("[task_execution_docker_runtime]", {}),
    ]


def test_feature_flags_are_not_runtime_options():
    layers = dict(config_layers("task", FULL_CONFIG.get))
    assert "task_execution_runtime" not in layers["[docker_runtime]"].set_fields()


@pytest.mark.parametrize(
    ("section", "expected"),
    [({}, "native"), ({"task_execution_runtime": ""}, "native"), ({"task_execution_runtime": "docker"}, "docker"),
     ({"task_execution_runtime": " Docker "}, "docker"), ({"task_execution_runtime": "NATIVE"}, "native")],
)
def test_runtime_flag(section, expected):
    assert runtime_flag("task", {"docker_runtime": section}.get) == expected


def test_runtime_flag_per_purpose():
    config = {"docker_runtime": {"task_execution_runtime": "docker", "scheduler_dag_parsing_runtime": "native"}}
    assert runtime_flag("task", config.get) == "docker"
    assert runtime_flag("parse", config.get) == "native"


@pytest.mark.parametrize("value", ["container", "true", "dockerd"])
def test_runtime_flag_refuses_other_values(value):
    with pytest.raises(RuntimeSpecError) as info:
        runtime_flag("parse", {"docker_runtime": {"scheduler_dag_parsing_runtime": value}}.get)
    assert (info.value.source, info.value.key) == ("[docker_runtime]", "scheduler_dag_parsing_runtime")
    assert "expected 'native' or 'docker'" in str(info.value)


# -- YAML files -------------------------------------------------------------------------------------


def test_yaml_file_up_to_the_cap_is_read(tmp_path):
    path = tmp_path / "f.yaml"
    body = "a: 1\n"
    path.write_text(body + "#" * (MAX_YAML_BYTES - len(body)))
    assert path.stat().st_size == MAX_YAML_BYTES
    assert read_yaml_file(path) == {"a": 1}


def test_yaml_file_one_byte_over_the_cap_is_refused(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("#" * (MAX_YAML_BYTES + 1))
    with pytest.raises(RuntimeSpecError, match=f"file is larger than the limit of {MAX_YAML_BYTES} bytes") as info:
        read_yaml_file(path)
    assert (info.value.source, info.value.key) == (str(path), "<file>")


def test_yaml_error_names_line_and_column(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("docker_runtime:\n  image: x\n\tmemory: 1g\n")
    with pytest.raises(RuntimeSpecError, match="invalid YAML at line 3, column 1"):
        read_yaml_file(path)


def test_yaml_python_tags_are_never_constructed(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "f.yaml"
    path.write_text(f'docker_runtime: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(RuntimeSpecError, match="explicit YAML tags"):
        read_yaml_file(path)
    assert not marker.exists()


# -- sidecars -------------------------------------------------------------------------------------


def test_sidecar_path_is_beside_the_dag_file():
    assert sidecar_path(Path("/dags/etl.py")) == Path("/dags/etl.py.metadata.yaml")


def test_no_sidecar_means_none(tmp_path):
    assert load_sidecar(write_dag(tmp_path)) is None


@pytest.mark.parametrize("text", ["", "# only a comment\n", "docker_runtime:\n", "docker_runtime: {}\ntasks: {}\n"])
def test_empty_sidecar_sets_nothing(tmp_path, text):
    sidecar = load_sidecar(write_dag(tmp_path, text))
    assert sidecar is not None
    assert sidecar.runtime.set_fields() == {}
    assert sidecar.tasks == {}


def test_sidecar_with_runtime_and_task_overrides(tmp_path):
    dag = write_dag(
        tmp_path,
        textwrap.dedent(
            """\
            docker_runtime:
              image: reg/app:1
              memory: 512m
              environments: {MODE: batch, RETRIES: 3}
            tasks:
              heavy:
                docker_runtime:
                  memory: 4g
              7:
                docker_runtime: {}
            """
        ),
    )
    sidecar = load_sidecar(dag)
    assert sidecar is not None
    assert sidecar.path == sidecar_path(dag)
    assert sidecar.runtime.set_fields() == {"image": "reg/app:1", "memory": 512 * MIB, "environments": {"MODE": "batch", "RETRIES": "3"}}
    assert sidecar.tasks["heavy"].memory == 4096 * MIB
    assert sidecar.tasks["7"].set_fields() == {}  # YAML int task ids become strings, like Airflow's


def test_sidecar_task_layer_only_for_that_task(tmp_path):
    sidecar = load_sidecar(write_dag(tmp_path, "docker_runtime: {memory: 1g}\ntasks: {heavy: {docker_runtime: {memory: 4g}}}\n"))
    assert sidecar is not None
    base = f"sidecar {sidecar.path}"
    assert [s for s, _ in sidecar.layers("heavy")] == [base, f"{base} tasks.heavy"]
    assert [s for s, _ in sidecar.layers("light")] == [base]
    assert [s for s, _ in sidecar.layers(None)] == [base]


@pytest.mark.parametrize("key", sorted(OPERATOR_ONLY_KEYS))
@pytest.mark.parametrize("where", ["docker_runtime", "tasks.t1.docker_runtime"])
def test_operator_only_keys_refused_in_a_sidecar(tmp_path, key, where):
    value = "x" if key != "environment_variables_from_host" else ["PATH"]
    block = {key: value}
    data = {"docker_runtime": block} if where == "docker_runtime" else {"tasks": {"t1": {"docker_runtime": block}}}
    dag = write_dag(tmp_path, json.dumps(data))  # JSON is YAML
    with pytest.raises(RuntimeSpecError) as info:
        load_sidecar(dag)
    assert (info.value.source, info.value.key) == (str(sidecar_path(dag)), f"{where}.{key}")
    assert "may only be set by the operator in airflow.cfg" in str(info.value)


@pytest.mark.parametrize("key", sorted(OPERATOR_ONLY_KEYS))
def test_operator_only_keys_accepted_from_airflow_cfg(key):
    value = {"environment_variables_from_host": "PATH", "fork_server": "True", "cap_add": "NET_BIND_SERVICE",
             "warm_pool_size": "2"}.get(key, "x")
    layer = layer_from_mapping({key: value}, "[docker_runtime]", trusted=True)
    assert key in layer.set_fields()


def test_unknown_key_in_a_sidecar_lists_only_what_a_sidecar_may_set(tmp_path):
    dag = write_dag(tmp_path, "docker_runtime:\n  memroy: 1g\n")
    with pytest.raises(RuntimeSpecError, match="unknown key; expected one of: ") as info:
        load_sidecar(dag)
    assert info.value.key == "docker_runtime.memroy"
    assert "memory" in info.value.message
    assert not any(key in info.value.message for key in OPERATOR_ONLY_KEYS)


def test_dangling_sidecar_symlink_is_an_error_not_absent(tmp_path):
    dag = write_dag(tmp_path)
    sidecar_path(dag).symlink_to(tmp_path / "gone.yaml")
    with pytest.raises(RuntimeSpecError, match="not a regular file") as info:
        load_sidecar(dag)
    assert (info.value.source, info.value.key) == (str(sidecar_path(dag)), "<file>")


def test_sidecar_that_is_not_a_regular_file_is_refused(tmp_path):
    dag = write_dag(tmp_path)
    fifo = sidecar_path(dag)
    os.mkfifo(fifo)
    payload = b"# padding\n" * (MAX_YAML_BYTES // 10 + 100)

    def writer() -> None:
        try:
            with open(fifo, "wb") as out:
                out.write(payload)
        except BrokenPipeError:
            pass

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        with pytest.raises(RuntimeSpecError) as info:
            load_sidecar(dag)
        assert (info.value.source, info.value.key) == (str(fifo), "<file>")
    finally:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # release the writer if nobody read the FIFO
        thread.join(10)


@pytest.mark.parametrize(("text", "key"), [("docker_runtime: []\n", "docker_runtime"), ("docker_runtime: false\n", "docker_runtime"),
                                           ("tasks: []\n", "tasks"), ("tasks: {t1: {docker_runtime: []}}\n", "tasks.t1.docker_runtime")])
def test_falsy_non_mappings_in_a_sidecar_are_refused(tmp_path, text, key):
    dag = write_dag(tmp_path, text)
    with pytest.raises(RuntimeSpecError) as info:
        load_sidecar(dag)
    assert info.value.key == key


# -- volume file ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["- /srv/a:/a:ro\n- cache:/c\n", "volumes:\n  - /srv/a:/a:ro\n  - {source: cache, target: /c}\n"])
def test_volume_file_list_or_mapping(tmp_path, text):
    path = tmp_path / "volumes.yaml"
    path.write_text(text)
    source, layer = volume_file_layer(str(path))
    assert source == f"volume_mount_yaml {path}"
    assert layer.volumes == (Volume(source="/srv/a", target="/a", read_only=True), Volume(source="cache", target="/c"))


@pytest.mark.parametrize("text", ["", "volumes:\n", "volumes: []\n"])
def test_empty_volume_file_adds_no_volumes(tmp_path, text):
    path = tmp_path / "volumes.yaml"
    path.write_text(text)
    assert volume_file_layer(str(path))[1].volumes == ()


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [("volumes: []\nextra: 1\n", "extra", "unknown key"), ("volumes: /a:/b\n", "volumes", "expected a list"),
     ("42\n", "volumes", "expected a list"), ("- relative\n", "volumes", "source:target")],
)
def test_bad_volume_file_names_file_and_key(tmp_path, text, key, message):
    path = tmp_path / "volumes.yaml"
    path.write_text(text)
    with pytest.raises(RuntimeSpecError, match=message) as info:
        volume_file_layer(str(path))
    assert (info.value.source, info.value.key) == (str(path), key)


def test_host_environment_copies_only_present_names():
    assert host_environment(("A", "MISSING", "B"), {"A": "1", "B": "", "C": "3"}) == {"A": "1", "B": ""}


# -- the real Airflow configuration reader ------------------------------------------------------------

_READ_WITH_AIRFLOW = """
import json
from airflow_docker_runtime.layers import config_layers
values = {}
for source, layer in config_layers("task"):
    values.update(layer.model_dump(mode="json", exclude_none=True))
print(json.dumps(values))
"""


def _layers_read_by_airflow(airflow_home: Path, cfg: str) -> dict:
    """Run config_layers('task') with Airflow's real reader in a child process (AIRFLOW_HOME = airflow_home)."""
    (airflow_home / "airflow.cfg").write_text(textwrap.dedent(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(airflow_home)
    result = subprocess.run([sys.executable, "-c", _READ_WITH_AIRFLOW], env=env, cwd=airflow_home, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_airflow_cfg_is_read_through_airflow_configuration(tmp_path):
    values = _layers_read_by_airflow(
        tmp_path,
        """\
        [docker_runtime]
        container_repository = reg/base
        network_mode = none
        privileged = False
        memory = 512m
        [docker_runtime_environment_variables]
        greeting = hello world
        [task_execution_docker_runtime]
        network_mode =
        """,
    )
    assert values["container_repository"] == "reg/base"
    assert values["network_mode"] == "none"  # the empty override inherits
    assert values["privileged"] is False
    assert values["memory"] == 512 * MIB
    assert values["environments"] == {"GREETING": "hello world"}


def test_airflow_cfg_values_reach_the_spec_as_written(tmp_path):
    values = _layers_read_by_airflow(
        tmp_path,
        """\
        [docker_runtime]
        container_repository = reg/base
        container_tag = 2.10
        run_as_user = 50000
        [docker_runtime_environment_variables]
        version = 1.10
        zip_code = 02134
        flag = t
        """,
    )
    assert values["container_tag"] == "2.10"
    assert values["run_as_user"] == "50000"
    assert values["environments"] == {"VERSION": "1.10", "ZIP_CODE": "02134", "FLAG": "t"}


def test_timing_knobs_are_seconds():
    from airflow_docker_runtime.layers import daemon_reattach_window, daemon_timeout, gc_interval

    assert (daemon_timeout(lambda s: {}), daemon_reattach_window(lambda s: {}), gc_interval(lambda s: {})) == (60, 60, 600)
    assert daemon_timeout(lambda s: {"daemon_timeout": "2.5"}) == 2.5
    assert daemon_reattach_window(lambda s: {"daemon_reattach_window": "0"}) == 0
    with pytest.raises(RuntimeSpecError, match=r"\[docker_runtime\]: key 'daemon_timeout': must be at least 0.1"):
        daemon_timeout(lambda s: {"daemon_timeout": "0"})
    with pytest.raises(RuntimeSpecError, match=r"key 'daemon_reattach_window': expected a number of seconds, got 'soon'"):
        daemon_reattach_window(lambda s: {"daemon_reattach_window": "soon"})
    with pytest.raises(RuntimeSpecError, match="key 'gc_interval': must not be negative"):
        gc_interval(lambda s: {"gc_interval": "-1"})
