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
