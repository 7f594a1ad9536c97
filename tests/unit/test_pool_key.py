"""The warm pool's key: everything `docker create` fixes, nothing that names a try. Pure: no daemon."""

from __future__ import annotations

from pathlib import Path

from airflow_docker_runtime.container import pool
from airflow_docker_runtime.container.docker_args import LaunchRequest, create_kwargs
from airflow_docker_runtime.container.owner import owner_labels
from airflow_docker_runtime.spec import DEFAULTS, RuntimeSpec

IMAGE_ID = "sha256:" + "a" * 64


def spec(**overrides) -> RuntimeSpec:
    values = {k: v for k, v in DEFAULTS.items() if k in RuntimeSpec.model_fields}
    values.update(image="registry.example.com/etl:2.4.1", **overrides)
    return RuntimeSpec(**values)


def kwargs_for(the_spec: RuntimeSpec, **request) -> dict:
    fields = dict(kind="task", name="adr-task-etl-load-0123456789ab", run_dir=pool.RUN_DIR_PLACEHOLDER, bootstrap_dir=Path("/b"),
                  labels={"dag_id": "etl", "task_id": "load", "run_id": "r1", "map_index": "-1", "try_number": "1", "ti_id": "x",
                          "dag_file": "/dags/etl.py", **owner_labels()})
    fields.update(request)
    return create_kwargs(the_spec, LaunchRequest(**fields), {})


def key(the_spec: RuntimeSpec, image_id: str = IMAGE_ID, **request) -> str:
    return pool.pool_template(kwargs_for(the_spec, **request), image_id)[0]


def test_two_tries_of_one_spec_share_a_key():
    other_try = {"dag_id": "etl", "task_id": "transform", "run_id": "r2", "map_index": "3", "try_number": "2", "ti_id": "y",
                 "dag_file": "/dags/etl.py", **owner_labels(), "supervisor_pid": "4242"}
    assert key(spec()) == key(spec(), name="adr-task-etl-transform-ba9876543210", labels=other_try)


def test_the_template_runs_the_image_id_and_names_no_try():
    _, template = pool.pool_template(kwargs_for(spec()), IMAGE_ID)
    assert template["image"] == IMAGE_ID
    assert "name" not in template
    assert not set(template["labels"]) & pool.IDENTITY_LABELS
    assert template["labels"]["airflow-docker-runtime.managed"] == "true"


def test_anything_create_fixes_is_another_key():
    base = key(spec())
    assert key(spec(), image_id="sha256:" + "b" * 64) != base  # a re-tagged image
    assert key(spec(memory=2 * 1024**3)) != base
    assert key(spec(cpus=0.5)) != base
    assert key(spec(network_mode="bridge")) != base
    assert key(spec(run_as_user="1234:1234")) != base
    assert key(spec(environments={"PIPELINE_ENV": "prod"})) != base
    assert key(spec(labels={"team": "data"})) != base
    assert key(spec(), bundle_paths=("/other/bundle",)) != base
    assert key(spec(), environment={"AIRFLOW__CORE__DEFAULT_TIMEZONE": "Europe/Paris"}) != base


def test_which_tries_the_pool_serves():
    assert pool.serves(spec(), "task")
    assert not pool.serves(spec(), "parse")
    assert not pool.serves(spec(warm_pool_size=0), "task")
    assert not pool.serves(spec(remove_container_after_exit=False), "task")  # kept containers are the try's own
    assert not pool.serves(spec(fork_server=True), "task")


def test_the_pool_socket_is_per_user_and_daemon():
    a = pool.pool_address("unix:///var/run/docker.sock", uid=1000)
    assert a.parent.name == "pool-1000"
    assert pool.pool_address("unix:///var/run/docker.sock", uid=1001) != a
    assert pool.pool_address("unix:///run/other.sock", uid=1000) != a
