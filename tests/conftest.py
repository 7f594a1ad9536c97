"""Fixtures shared by every test suite: the Docker daemon, for tests marked ``docker``."""

from __future__ import annotations

import os
from collections.abc import Iterator

import docker
import docker.errors
import pytest
import requests

DOCKER_URL = "unix:///var/run/docker.sock"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client for the local daemon. Skips without one -- but fails under ``CI=true``, where a skip would hide it."""
    try:
        client = docker.DockerClient(base_url=DOCKER_URL, version="auto")
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and no Docker daemon answers at {DOCKER_URL}: run scripts/ensure-docker.sh ({exc})")
        pytest.skip(f"no Docker daemon: nothing answers at {DOCKER_URL} (run scripts/ensure-docker.sh): {exc}")
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _docker_marker(request: pytest.FixtureRequest) -> None:
    """A test marked ``docker`` gets the daemon check even if it does not ask for ``docker_client`` itself."""
    if request.node.get_closest_marker("docker") is not None:
        request.getfixturevalue("docker_client")


_audit = None


def pytest_sessionstart(session: pytest.Session) -> None:
    """Audit every runtime container this session creates against the hardened profile (ADR 0008)."""
    global _audit
    from tests.support.audit import ContainerAudit

    try:
        client = docker.DockerClient(base_url=DOCKER_URL, version="auto")
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
        return  # no daemon: no container to audit
    _audit = ContainerAudit(client)
    _audit.start()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Report the audit; any container that was not inspected or departs from the profile fails the session."""
    from pathlib import Path

    if _audit is None:
        return
    _audit.stop()
    _audit.write(Path(__file__).resolve().parents[1] / ".cache" / "container-audit.json")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(_audit.summary(), red=bool(_audit.failures()))
    if _audit.failures():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
