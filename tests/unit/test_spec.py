"""The runtime spec model: sizes, volumes, one layer's validation, and the merge rules."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from airflow_docker_runtime.spec import (
    MERGE_RULES,
    OPERATOR_ONLY_KEYS,
    RuntimeOptions,
    Volume,
    format_size,
    merge_layers,
    parse_size,
)
from tests.unit.factories import make_spec

KIB, MIB, GIB = 1024, 1024**2, 1024**3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("256m", 256 * MIB),
        ("2g", 2 * GIB),
        ("2G", 2 * GIB),
        ("1.5GiB", int(1.5 * GIB)),
        ("512 MB", 512 * MIB),
        ("64k", 64 * KIB),
        ("1t", 1024**4),
        ("1048576", 1048576),
        (1048576, 1048576),
        (" 8m ", 8 * MIB),
    ],
)
def test_parse_size_accepts_docker_style_sizes(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", [True, False, 0, -1, "0", "0m", "-1g", "lots", "1x", "", "m", [1], {"a": 1}, None])
def test_parse_size_refuses_non_sizes(value):
    with pytest.raises(ValueError, match="size like 512m"):
        parse_size(value)


@pytest.mark.parametrize(
    ("size", "text"), [(None, "unlimited"), (256 * MIB, "256m"), (2 * GIB, "2g"), (3 * KIB, "3k"), (1000, "1000b")]
)
def test_format_size_renders_what_an_operator_writes(size, text):
    assert format_size(size) == text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/data:/mnt/data", Volume(source="/data", target="/mnt/data", read_only=False)),
        ("/data:/mnt/data:ro", Volume(source="/data", target="/mnt/data", read_only=True)),
        ("/data:/mnt/data:rw", Volume(source="/data", target="/mnt/data", read_only=False)),
        ("cache:/cache", Volume(source="cache", target="/cache")),
        ({"source": "/d", "target": "/t", "read_only": True}, Volume(source="/d", target="/t", read_only=True)),
        ({"source": "/d", "target": "/t"}, Volume(source="/d", target="/t", read_only=False)),
    ],
)
def test_volume_parse_short_and_long_forms(value, expected):
    assert Volume.parse(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a", "source:target"),
        ("a:/b:rx", "source:target"),
        ("/a:/b:ro:x", "source:target"),
        ("vol:relative/target", "absolute path"),
        (":/b", "source is empty"),
        ({"source": "/a", "target": "/b", "mode": "ro"}, "Extra inputs"),
        ({"source": "/a"}, "target"),
        (42, "got 42"),
    ],
)
def test_volume_parse_refuses_malformed_volumes(value, message):
    with pytest.raises(ValueError, match=message):
        Volume.parse(value)


def test_volume_host_path_versus_named_volume():
    assert Volume.parse("/srv/data:/data").is_host_path
    assert not Volume.parse("shared-cache:/data").is_host_path
    assert str(Volume.parse("/a:/b:ro")) == "/a:/b:ro"
    assert str(Volume.parse("/a:/b")) == "/a:/b:rw"


def test_options_layer_sets_only_what_it_says():
    layer = RuntimeOptions.model_validate({"memory": "256m", "privileged": False})
    assert layer.set_fields() == {"memory": 256 * MIB, "privileged": False}
    assert RuntimeOptions().set_fields() == {}


def test_options_layer_refuses_unknown_keys_and_is_immutable():
    with pytest.raises(ValidationError, match="memroy"):
        RuntimeOptions.model_validate({"memroy": "1g"})
    layer = RuntimeOptions(cpus=1)
    with pytest.raises(ValidationError):
        layer.cpus = 2  # type: ignore[misc]


@pytest.mark.parametrize("key", ["network_mode", "run_as_user", "container_repository", "container_tag", "memory", "shm_size", "gpus"])
def test_empty_string_means_not_set(key):
    assert key not in RuntimeOptions.model_validate({key: ""}).set_fields()


def test_mappings_coerce_yaml_scalars_to_strings():
    layer = RuntimeOptions.model_validate({"environments": {"N": 1, "B": True, "F": False, "X": 1.5, "E": None}})
    assert layer.environments == {"N": "1", "B": "true", "F": "false", "X": "1.5", "E": ""}


@pytest.mark.parametrize("key", ["environments", "labels", "extra_hosts"])
def test_mappings_accept_the_config_string_form(key):
    layer = RuntimeOptions.model_validate({key: "a=10.0.0.1, b = 10.0.0.2,,"})
    assert getattr(layer, key) == {"a": "10.0.0.1", "b": "10.0.0.2"}


@pytest.mark.parametrize("key", ["environments", "labels", "extra_hosts"])
def test_mappings_refuse_nested_values(key):
    with pytest.raises(ValidationError, match="expected a string, number or boolean"):
        RuntimeOptions.model_validate({key: {"a": {"nested": 1}}})


def test_environment_variables_from_host_accepts_a_comma_list():
    assert RuntimeOptions.model_validate({"environment_variables_from_host": "A, B,"}).environment_variables_from_host == ("A", "B")


@pytest.mark.parametrize(("value", "expected"), [("all", "all"), ("ALL", "all"), (2, "2"), ("1", "1")])
def test_gpus_all_or_a_count(value, expected):
    assert RuntimeOptions(gpus=value).gpus == expected


@pytest.mark.parametrize("value", ["many", "0", 0, "-1", "1.5"])
def test_gpus_refuses_anything_else(value):
    with pytest.raises(ValidationError, match="'all' or a positive count"):
        RuntimeOptions(gpus=value)


@pytest.mark.parametrize(
    "data",
    [{"cpus": 0}, {"cpus": -1}, {"pids_limit": 0}, {"pids_limit": -1}, {"stop_timeout": -1}, {"stop_timeout": "soon"},
     {"connect_timeout": 0}, {"pull_policy": "sometimes"}, {"privileged": "maybe"}, {"volumes": "/a:/b"}],
)
def test_layer_refuses_out_of_range_values(data):
    with pytest.raises(ValidationError):
        RuntimeOptions.model_validate(data)


def test_operator_only_keys_are_real_options():
    assert OPERATOR_ONLY_KEYS <= set(RuntimeOptions.model_fields)


# -- merge_layers -----------------------------------------------------------------------------------


def test_merge_rules_name_exactly_the_merged_keys():
    # A new merged key needs its own case in the tests below.
    assert set(MERGE_RULES) == {"environments", "labels", "extra_hosts", "volumes"}


@pytest.mark.parametrize("key", ["environments", "labels", "extra_hosts"])
def test_mapping_keys_merge_by_key_later_layer_wins(key):
    values, sources = merge_layers(
        [
            ("first", RuntimeOptions.model_validate({key: {"a": "10.0.0.1", "b": "10.0.0.1"}})),
            ("second", RuntimeOptions.model_validate({})),
            ("third", RuntimeOptions.model_validate({key: {"b": "10.0.0.3", "c": "10.0.0.3"}})),
        ]
    )
    assert values[key] == {"a": "10.0.0.1", "b": "10.0.0.3", "c": "10.0.0.3"}
    assert sources[key] == "first + third"


def test_volumes_merge_by_target_later_layer_wins():
    values, sources = merge_layers(
        [
            ("operator", RuntimeOptions(volumes=["/srv/a:/a", "/srv/b:/b:ro"])),
            ("sidecar", RuntimeOptions(volumes=["/srv/other:/b", "cache:/c"])),
        ]
    )
    assert values["volumes"] == (
        Volume(source="/srv/a", target="/a"),
        Volume(source="/srv/other", target="/b", read_only=False),
        Volume(source="cache", target="/c"),
    )
    assert sources["volumes"] == "operator + sidecar"


def test_scalars_and_lists_replace():
    values, sources = merge_layers(
        [
            ("first", RuntimeOptions(memory="1g", image="a:1", environment_variables_from_host=["A"], privileged=True)),
            ("second", RuntimeOptions(memory="2g", environment_variables_from_host=["B"], privileged=False)),
        ]
    )
    assert values == {"memory": 2 * GIB, "image": "a:1", "environment_variables_from_host": ("B",), "privileged": False}
    assert sources == {"memory": "second", "image": "first", "environment_variables_from_host": "second", "privileged": "second"}


def test_merge_of_nothing_is_empty():
    assert merge_layers([]) == ({}, {})


def test_limits_summary_states_the_enforced_limits():
    assert make_spec(memory=256 * MIB, cpus=0.5, pids_limit=64).limits_summary() == "memory=256m cpus=0.5 pids=64"
    assert make_spec().limits_summary() == "memory=1g cpus=1.0 pids=512"  # the hardened defaults
    assert make_spec(memory=None, cpus=None, pids_limit=None).limits_summary() == "memory=unlimited cpus=unlimited pids=unlimited"
    assert make_spec(memory=MIB, limit_resource=False).limits_summary() == "none (limit_resource = False)"
