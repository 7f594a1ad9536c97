"""An audit of every container the runtime creates while the test suite runs (issue 11, part 6).

It listens to the daemon's ``create`` events for containers labelled ``airflow-docker-runtime.managed``,
inspects each one at once and checks it against the hardened profile (``profile.py``). A test that
loosens a container on purpose says so with the label ``adr-test.loosened=<what>``; such a container may
depart from the profile only in violations that mention ``<what>``. A container gone before it could be
inspected counts as not audited. The session fails unless 100 % were audited and met the profile.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import docker
import docker.errors

from tests.support.profile import profile_violations

MANAGED = "airflow-docker-runtime.managed=true"
LOOSENED_LABEL = "adr-test.loosened"
FIXTURE_LABEL = "adr-test.fixture"
"""On containers a test creates by hand to imitate the runtime's (orphans): not the runtime's, not audited."""


@dataclass
class Audited:
    id: str
    name: str
    kind: str
    loosened: str | None
    violations: list[str] = field(default_factory=list)
    inspected: bool = True

    @property
    def passes(self) -> bool:
        if not self.inspected:
            return False
        return all(self.loosened and self.loosened in v for v in self.violations)


def audit_inspect(attrs: dict) -> tuple[list[str], str | None]:
    """Violations of one ``docker inspect`` result, and what its test declared loosened."""
    config, host = attrs["Config"], attrs["HostConfig"]
    labels = config.get("Labels") or {}
    return profile_violations(config.get("User"), labels, host), labels.get(LOOSENED_LABEL)


def ours(labels: dict) -> bool:
    """Created by this test session: its supervisor is this process or a descendant (a stack's worker or DAG
    processor), or an integration test labelled it, or a warm pool made it (a pool server outlives the
    worker that started it, so its PID is no descendant's). Other sessions on the same daemon are not
    audited here (a developer machine may run several)."""
    if "airflow-docker-runtime.test_id" in labels or labels.get("airflow-docker-runtime.pooled") == "true":
        return True
    pid = labels.get("airflow-docker-runtime.supervisor_pid", "")
    while pid.isdigit() and int(pid) > 1:
        if int(pid) == os.getpid():
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = stat.rpartition(")")[2].split()[1]  # the parent's PID (the name may contain spaces)
    return False


class ContainerAudit:
    """Start with :meth:`start`, stop with :meth:`stop`; results in :attr:`containers`."""

    def __init__(self, client: docker.DockerClient, owned: Callable[[dict], bool] | None = None) -> None:
        self.client = client
        self.owned = owned or ours
        self.containers: list[Audited] = []
        self._events = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        self._events = self.client.api.events(decode=True, filters={"type": "container", "event": "create", "label": MANAGED})
        self._thread = threading.Thread(target=self._run, name="container-audit", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._events is not None
        try:
            for event in self._events:
                self._audit(event["id"], (event.get("Actor") or {}).get("Attributes") or {})
        except Exception:  # the stream is closed by stop()
            return

    def _audit(self, container_id: str, attributes: dict) -> None:
        if not self.owned(attributes) or FIXTURE_LABEL in attributes:
            return
        try:
            attrs = self.client.api.inspect_container(container_id)
        except docker.errors.NotFound:
            self.containers.append(Audited(container_id, attributes.get("name", "?"), attributes.get("airflow-docker-runtime.kind", "?"),
                                           attributes.get(LOOSENED_LABEL), ["gone before it could be inspected"], inspected=False))
            return
        violations, loosened = audit_inspect(attrs)
        labels = attrs["Config"].get("Labels") or {}
        self.containers.append(Audited(container_id, attrs["Name"].lstrip("/"), labels.get("airflow-docker-runtime.kind", "?"),
                                       loosened, violations))

    def stop(self) -> None:
        if self._events is not None:
            self._events.close()
        if self._thread is not None:
            self._thread.join(10)

    def failures(self) -> list[Audited]:
        return [c for c in self.containers if not c.passes]

    def summary(self) -> str:
        total, failed = len(self.containers), len(self.failures())
        loosened = sum(1 for c in self.containers if c.loosened)
        share = 100.0 if total == 0 else 100.0 * (total - failed) / total
        lines = [f"container audit: {total} runtime containers created, {total - failed} met the hardened profile "
                 f"({share:.1f} %), {loosened} of them loosened on purpose by their test"]
        lines += [f"  FAILED {c.name} ({c.kind}): {'; '.join(c.violations)}" for c in self.failures()]
        return "\n".join(lines)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([asdict(c) for c in self.containers], indent=2))
