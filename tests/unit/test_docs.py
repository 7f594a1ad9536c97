"""The configuration reference documents every key the provider registers."""

from __future__ import annotations

from pathlib import Path

from airflow_docker_runtime.provider import get_provider_info

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_configuration_key_and_section_is_documented():
    text = DOC.read_text()
    missing = []
    for section, body in get_provider_info()["config"].items():
        if f"[{section}]" not in text:
            missing.append(f"[{section}]")
        missing += [f"[{section}] {key}" for key in body["options"] if f"`{key}`" not in text]
    assert not missing, f"undocumented in docs/configuration.md: {missing}"


OPERATIONS = DOC.with_name("operations.md")


def test_every_cli_option_is_documented():
    """docs/operations.md names each ``airflow docker-runtime`` command and each of its options
    (``dag-processor`` takes the upstream command's options, documented as such)."""
    from airflow_docker_runtime.cli.definition import get_cli_commands

    text = OPERATIONS.read_text()
    missing = []
    for command in get_cli_commands()[0].subcommands:
        if f"`airflow docker-runtime {command.name}" not in text:
            missing.append(command.name)
        if command.name == "dag-processor":
            continue
        for arg in command.args:
            flags = [f for f in arg.flags if f.startswith("-")]
            names = flags or [arg.flags[0].upper()]  # a positional appears as its metavar: PATH, DAG_ID
            if not any(f"`{name}" in text or f" {name} " in text or f"[{name}" in text for name in names):
                missing.append(f"{command.name} {'/'.join(names)}")
    assert not missing, f"undocumented in docs/operations.md: {missing}"
