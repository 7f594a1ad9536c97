"""Fixtures of the fault tests: a private Docker daemon they may stop, freeze and restart."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import require
from tests.integration.conftest import short_dir, test_id  # noqa: F401 (fixtures)
from tests.support.private_daemon import PrivateDaemon


@pytest.fixture(scope="session")
def private_daemon() -> Iterator[PrivateDaemon]:
    """The private daemon, running without live-restore; stopped and its bridge removed at the session's end."""
    require(os.geteuid() == 0, "the fault tests start a private dockerd: they need root")
    require(shutil.which("dockerd") is not None, "the fault tests need dockerd (scripts/ensure-docker.sh installs it)")
    daemon = PrivateDaemon()
    daemon.start()
    yield daemon
    daemon.clean()
