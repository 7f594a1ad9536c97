"""A private second Docker daemon that fault tests may stop, freeze and restart (scripts/private-dockerd.sh).

The daemon every other test uses is never touched: this one has its own socket, data root, exec root,
pid file and bridge, and holds the test image. Starting it is idempotent; the session's end stops it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import docker

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "private-dockerd.sh"


class PrivateDaemon:
    """Start, stop, freeze and thaw the private daemon; :attr:`url` is its ``socket_path``."""

    def __init__(self) -> None:
        self.url = ""
        self._client: docker.DockerClient | None = None

    def start(self, *, live_restore: bool = False) -> None:
        """Start it (or keep it running if its live-restore setting is already ``live_restore``)."""
        args = [str(SCRIPT), "start"] + (["--live-restore"] if live_restore else [])
        self.url = subprocess.run(args, check=True, capture_output=True, text=True, timeout=300).stdout.strip()

    def stop(self) -> None:
        """Stop it as systemd would (SIGTERM) and wait until it has exited."""
        subprocess.run([str(SCRIPT), "stop"], check=True, timeout=60)

    def clean(self) -> None:
        if self._client is not None:
            self._client.close()
        subprocess.run([str(SCRIPT), "clean"], check=True, timeout=60)

    @property
    def pid(self) -> int:
        return int(Path("/run/adr-private-dockerd/docker.pid").read_text())

    def freeze(self) -> None:
        """Make it stop answering while its socket stays (SIGSTOP): a hung daemon."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def client(self) -> docker.DockerClient:
        """A client of the test's own (not the runtime's cached one)."""
        if self._client is None:
            self._client = docker.DockerClient(base_url=self.url, version="auto", timeout=30)
        return self._client

    def wait_for(self, what, timeout: float = 30.0, message: str = ""):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = what()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(message or f"not within {timeout:g}s")
