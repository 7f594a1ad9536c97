"""Images derived offline from adr-test/base for version-check tests (built on demand, cached by an input hash)."""

from __future__ import annotations

import hashlib
import io
from importlib.metadata import version

import docker

BASE = "adr-test/base:latest"
HASH_LABEL = "adr.inputs-hash"
SITE_PACKAGES = "/opt/airflow/venv/lib/python3.11/site-packages"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def other_sdk_minor() -> str:
    """A Task SDK version of another minor than this worker's: 1.3.2 -> 1.4.0."""
    major, minor = version("apache-airflow-task-sdk").split(".")[:2]
    return f"{major}.{int(minor) + 1}.0"


def sdk_minor_dockerfile() -> str:
    """adr-test/base with only the *recorded* version of apache-airflow-task-sdk changed (its METADATA's
    Version field): no other Task SDK release can be downloaded here, and the version check reads nothing else."""
    return (
        f"FROM {BASE}\n"
        f"RUN sed -i 's/^Version: .*/Version: {other_sdk_minor()}/' {SITE_PACKAGES}/apache_airflow_task_sdk-*.dist-info/METADATA\n"
    )


NO_AIRFLOW_DOCKERFILE = (
    f"FROM {BASE}\n"
    f"ENV PATH={CLEAN_PATH}\n"
    # Debian's python3 as `python`, outside the venv: a working Python without Airflow.
    "RUN ln -s /usr/bin/python3 /usr/local/bin/python\n"
)


def ensure_image(client: docker.DockerClient, tag: str, dockerfile: str) -> str:
    """Build ``dockerfile`` as ``tag`` with no network, unless the image with the same inputs exists."""
    digest = hashlib.sha256((dockerfile + client.images.get(BASE).id).encode()).hexdigest()
    try:
        if client.images.get(tag).labels.get(HASH_LABEL) == digest:
            return tag
    except docker.errors.ImageNotFound:
        pass
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, network_mode="none", rm=True, forcerm=True,
                        labels={HASH_LABEL: digest})
    return tag


def sdk_minor_image(client: docker.DockerClient) -> str:
    return ensure_image(client, "adr-test/sdk-minor:latest", sdk_minor_dockerfile())


def no_airflow_image(client: docker.DockerClient) -> str:
    return ensure_image(client, "adr-test/no-airflow:latest", NO_AIRFLOW_DOCKERFILE)
