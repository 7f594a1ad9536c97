"""Property-based fuzzing of the sidecar reader (issue 11): 10,000 generated sidecars.

For every input, through the same ``resolve`` a task try and a parse use: either a
:class:`RuntimeSpecError` that names the sidecar and a key in a short message, or a spec whose Docker
create arguments meet the hardened profile (checked by ``tests/support/profile.py``, written apart from
``docker_args.py``). Anything else -- another exception, a traceback in a message, a long echo of a
value, a spec that escapes the profile -- fails the test.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from docker.models.containers import _create_container_args
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_docker_runtime.container.docker_args import LaunchRequest, create_kwargs
from airflow_docker_runtime.errors import RuntimeSpecError
from airflow_docker_runtime.layers import sidecar_path
from airflow_docker_runtime.spec import RuntimeOptions
from tests.support.profile import profile_violations
from tests.unit.factories import BASE_CONFIG, resolve_with

EXAMPLES = 10_000
KEYS = [*RuntimeOptions.model_fields, "memroy", "<<", "docker_runtime", "tasks"]
INTERESTING = [
    "512m", "2g", "64g", "1k", "0", "-1", "1e400", ".inf", ".nan", "all", "none", "bridge", "host", "container:x",
    "etl-net", "root", "0:0", "50000", "1000:1000", "/etc:/x", "/etc:/x:ro", "cache:/c", "./x:/y", "~/x:/y",
    "/tmp/../etc:/x", "x:/run/airflow-docker-runtime", "/var/run/docker.sock:/s", "adr-test/base:latest", "Evil/X",
    "a b", "--privileged", "airflow-docker-runtime.keep", "traefik.enable", "always", "never", "missing", "runsc",
    "10.0.0.1", "host-gateway", "A=B", "x\x00y", "SYS_ADMIN", "/bin/sh", "python3", "true", "false", "yes", "x" * 300,
]
TOKENS = ["&a ", "*a", "!!binary ", "!!python/object/apply:os.system ", "<<: ", "? ", "[", "]", "{", "}", "---\n", "\t",
          ": ", "- ", "\n", "'", '"', "#", "%YAML 1.1\n", "!!set ", "2024-01-01", "0x1F", "0o17", "~", "|\n  ", ">\n  "]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.text(max_size=20),
    st.sampled_from(INTERESTING),
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(KEYS), children, max_size=3),
    max_leaves=6,
)
blocks = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)
documents = st.fixed_dictionaries(
    {},
    optional={
        "docker_runtime": blocks,
        "tasks": st.dictionaries(st.sampled_from(["t1", "t2", "7"]), st.fixed_dictionaries({"docker_runtime": blocks}) | values, max_size=2),
    },
)


@st.composite
def sidecars(draw: st.DrawFn) -> str:
    """YAML text: a dumped document, sometimes with YAML tokens spliced in, or raw token soup."""
    kind = draw(st.sampled_from(["document", "spliced", "soup"]))
    if kind == "soup":
        return "".join(draw(st.lists(st.sampled_from(TOKENS + INTERESTING + KEYS), max_size=40)))
    text = yaml.safe_dump(draw(documents), default_flow_style=draw(st.booleans()), allow_unicode=True)
    if kind == "spliced":
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.sampled_from(TOKENS)) + text[at:]
    return text


FOLDER = Path(tempfile.mkdtemp(prefix="adr-fuzz-")) / "dags"
FOLDER.mkdir()
DAG = FOLDER / "fuzz.py"
DAG.write_text("# a DAG file\n")
SIDECAR = sidecar_path(DAG)
REQUEST = LaunchRequest(kind="task", name="adr-fuzz", run_dir=FOLDER / "run", bootstrap_dir=FOLDER / "bootstrap",
                        bundle_paths=(str(FOLDER),), image_user="0")


def check(text: str, purpose: str) -> None:
    SIDECAR.write_text(text)
    try:
        resolution = resolve_with(DAG, BASE_CONFIG, purpose=purpose, task_id="t1")
    except RuntimeSpecError as exc:
        message = str(exc)
        assert message.startswith(f"{SIDECAR}: key '"), message
        assert len(message) < 700 and "Traceback" not in message, message
        return
    create = _create_container_args({**create_kwargs(resolution.spec, REQUEST, host_env={}), "version": "1.41"})
    assert profile_violations(create["user"], create["labels"], create["host_config"]) == [], text


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(text=sidecars(), purpose=st.sampled_from(["task", "parse"]))
def test_any_sidecar_is_refused_with_file_and_key_or_meets_the_profile(text, purpose):
    check(text, purpose)


def test_the_fuzzer_reaches_both_outcomes():
    """The property is not vacuous: hand-picked inputs of each outcome behave as the property expects."""
    check("docker_runtime:\n  memory: 512m\n  network_mode: none\n", "task")
    check("docker_runtime:\n  privileged: true\n", "task")
    SIDECAR.write_text("docker_runtime:\n  memory: 512m\n")
    assert resolve_with(DAG, BASE_CONFIG).spec.memory == 512 * 1024**2
    # And the profile check bites: an operator's loosening is caught by it (the policy never looks there).
    loose = {"docker_runtime": {**BASE_CONFIG["docker_runtime"], "network_mode": "bridge", "read_only_rootfs": "false"}}
    create = _create_container_args({**create_kwargs(resolve_with(DAG, loose).spec, REQUEST, host_env={}), "version": "1.41"})
    assert profile_violations(create["user"], create["labels"], create["host_config"]) == [
        "root filesystem writable", "NetworkMode='bridge', not one of ('none',)"]
