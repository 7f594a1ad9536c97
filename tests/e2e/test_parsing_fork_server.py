"""DAG parsing with the default `fork_server = True`: one long-lived container per parsing spec forks a child per file."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import PG_URL, dags_folder, docker_config, postgres_answers, require
from tests.e2e.test_parsing_in_containers import PARSE_DAGS, errors_by_file
from tests.support.stack import AirflowStack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

SERVERS = ["airflow-docker-runtime.managed=true", "airflow-docker-runtime.fork_server=true"]


def servers(docker_client, running_only: bool = True) -> dict[str, dict]:
    """Fork-server containers by id."""
    return {c["Id"]: c for c in docker_client.api.containers(all=not running_only, filters={"label": SERVERS})}


def parse_events(stack, file: str) -> list[dict]:
    """The "Started container" and "Container exited" lines of ``file``'s parse logs, oldest first."""
    events = []
    for path in (stack.home / "logs" / "dag_processor").rglob(f"{file}.log"):
        for line in path.read_text(errors="replace").splitlines():
            if '"Started container"' in line or '"Container exited"' in line:
                events.append(json.loads(line))
    return sorted(events, key=lambda e: e["timestamp"])


def parse_starts(stack, file: str) -> list[dict]:
    return [e for e in parse_events(stack, file) if e["event"] == "Started container"]


@pytest.fixture(scope="module")
def fork_stack(tmp_path_factory, docker_client):
    require(postgres_answers(), "PostgreSQL does not answer on 127.0.0.1:5432 (run scripts/ensure-postgres.sh)")
    assert not servers(docker_client), "a fork server of an earlier run is still running"
    tmp = tmp_path_factory.mktemp("forkserver")
    config = docker_config(scheduler_dag_parsing_runtime="docker")
    # No fork_server setting: fork servers are the default for parsing.
    config["dag_processor"] = {"dag_file_processor_timeout": "15"}
    stack = AirflowStack(
        tmp / "home", dags_folder(tmp, PARSE_DAGS), db_url=PG_URL, config=config, dag_processor=("docker-runtime", "dag-processor")
    )
    with stack:
        yield stack
    # The processor is gone: its servers stopped with it (atexit, or their lifeline on a hard kill).
    wait_for(lambda: not servers(docker_client), timeout=30, what="the fork servers to stop with the DAG processor")


def test_files_are_parsed_in_their_images_by_one_server_per_spec(fork_stack, docker_client):
    fork_stack.wait_for_dags(["parse_v1", "parse_v2"])
    errors = errors_by_file(fork_stack)
    assert not [f for f in errors if f.startswith("parse_v")], errors
    assert "boom from the DAG file" in wait_for(lambda: errors_by_file(fork_stack).get("raises.py"), timeout=120, what="raises.py's error")
    unknown = wait_for(lambda: errors_by_file(fork_stack).get("unknown_image.py"), timeout=120, what="unknown_image.py's error")
    assert "adr-test/unknown:9.9" in unknown and "ImageNotFound" in unknown

    # base (raises.py), base + stop_timeout 2 (slow_parse.py), dep-v1, dep-v2: four specs, four servers.
    first = wait_for(lambda: len(s := servers(docker_client)) == 4 and s, timeout=120, what="four fork servers")
    assert sorted(c["Image"] for c in first.values()) == [
        "adr-test/base:latest", "adr-test/base:latest", "adr-test/dep-v1:latest", "adr-test/dep-v2:latest"
    ]
    # The next parsing loops fork in the same server instead of starting a container: ms, not seconds.
    starts = wait_for(lambda: len(s := parse_starts(fork_stack, "parse_v1.py")) >= 2 and s, timeout=120, what="parse_v1.py parsed twice")
    assert {start["container_id"] for start in starts} == {next(i[:12] for i, c in first.items() if c["Image"] == "adr-test/dep-v1:latest")}
    assert starts[-1]["start_seconds"] < 0.5, starts[-1]
    assert set(servers(docker_client)) == set(first)


def test_a_timed_out_parse_kills_its_child_not_the_server(fork_stack, docker_client):
    # As natively, a timed-out parse is killed and logged (no import error): here SIGKILL to the forked
    # child only; the server lives on and the file's next parse is forked in the same container.
    wait_for(lambda: "exceeding the timeout" in fork_stack.component_log("dag-processor"), timeout=120, what="the processor timeout")
    events = wait_for(
        lambda: (e := parse_events(fork_stack, "slow_parse.py"))
        and any(x["event"] == "Container exited" for x in e)
        and e[-1]["event"] == "Started container"
        and e,
        timeout=120, what="slow_parse.py killed and parsed again",
    )
    exits = [x for x in events if x["event"] == "Container exited"]
    assert exits[0]["exit_code"] == -9
    assert {x["container_id"] for x in events} == {exits[0]["container_id"]}  # one server throughout
    assert exits[0]["container_id"] in {i[:12] for i in servers(docker_client)}
    fork_stack.wait_for_dags(["parse_v1", "parse_v2"])
    assert fork_stack.procs["dag-processor"].poll() is None
