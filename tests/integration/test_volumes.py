"""A named volume that does not exist is refused, not created (issue 11, part 4)."""

from __future__ import annotations

import pytest

from airflow_docker_runtime.container.volumes import ensure_volumes_exist
from airflow_docker_runtime.errors import ContainerStartupError
from airflow_docker_runtime.spec import Volume
from tests.unit.factories import make_spec

pytestmark = pytest.mark.docker


def test_missing_volume_is_refused_and_not_created(docker_client, test_id):
    name = f"adr-missing-{test_id}"
    spec = make_spec(volumes=(Volume.parse("/srv:/srv:ro"), Volume.parse(f"{name}:/data")))
    with pytest.raises(ContainerStartupError, match=f"volume '{name}' \\(for /data\\) does not exist"):
        ensure_volumes_exist(docker_client, spec)
    assert name not in {v.name for v in docker_client.volumes.list()}


def test_existing_volume_passes(docker_client, test_id):
    volume = docker_client.volumes.create(f"adr-present-{test_id}")
    try:
        ensure_volumes_exist(docker_client, make_spec(volumes=(Volume.parse(f"{volume.name}:/data:ro"),)))
    finally:
        volume.remove()
