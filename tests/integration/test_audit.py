"""The container audit finds what departs from the hardened profile (so its 100 % can be trusted)."""

from __future__ import annotations

import time

import pytest

from airflow_docker_runtime.container.docker_args import LaunchRequest, create_kwargs
from tests.support.audit import ContainerAudit
from tests.support.stack import wait_for
from tests.unit.factories import make_spec

pytestmark = pytest.mark.docker

IMAGE = "adr-test/base:latest"


def test_the_audit_passes_a_hardened_container_and_catches_a_default_docker_one(docker_client, test_id, short_dir):
    audit = ContainerAudit(docker_client, owned=lambda labels: labels.get("adr-audit-test") == test_id)
    audit.start()
    time.sleep(0.5)  # the events stream is open once the daemon has answered
    request = LaunchRequest(kind="task", name=f"adr-audit-hardened-{test_id}", run_dir=short_dir, bootstrap_dir=short_dir)
    hardened = create_kwargs(make_spec(image=IMAGE, labels={"adr-audit-test": test_id}), request, host_env={})
    created = [
        docker_client.containers.create(**{**hardened, "command": ["true"]}),
        docker_client.containers.create(IMAGE, ["true"], name=f"adr-audit-plain-{test_id}",
                                        labels={"airflow-docker-runtime.managed": "true", "adr-audit-test": test_id}),
    ]
    try:
        wait_for(lambda: len(audit.containers) == 2, timeout=20, what="two audited containers")
    finally:
        audit.stop()
        for container in created:
            container.remove(force=True)
    by_name = {c.name: c for c in audit.containers}
    assert by_name[f"adr-audit-hardened-{test_id}"].passes, by_name[f"adr-audit-hardened-{test_id}"].violations
    plain = by_name[f"adr-audit-plain-{test_id}"]
    assert not plain.passes
    assert {"privileged", "root filesystem writable"} - set(plain.violations) == {"privileged"}
    assert any("runs as root" in v for v in plain.violations) and any("CapDrop" in v for v in plain.violations)
    assert any("NetworkMode='default'" in v or "NetworkMode='bridge'" in v for v in plain.violations)
