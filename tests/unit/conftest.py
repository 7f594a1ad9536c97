"""Unit tests are pure: any attempt to reach a Docker daemon fails the test."""

from __future__ import annotations

import docker.api.client
import pytest


@pytest.fixture(autouse=True)
def no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a unit test tried to create a Docker client")

    monkeypatch.setattr(docker.api.client.APIClient, "__init__", refuse)
