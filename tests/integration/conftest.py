"""Fixtures of the integration tests (a real Docker daemon, no Airflow components)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def test_id() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a unix socket path has at most 107 bytes (pytest's tmp_path is long)."""
    path = Path(tempfile.mkdtemp(prefix="adr-it-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True, scope="module")
def _leave_the_warm_pool() -> Iterator[None]:
    """A test process that launched tries is a worker process of the host's warm pool: leave it after each
    module, so the pool stops when the tests that use it are done (and e2e workers get a pool of their own)."""
    yield
    from airflow_docker_runtime.container import pool

    pool.disconnect()
