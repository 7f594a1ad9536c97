"""A counting proxy in front of the Docker socket: every API request that passes it is recorded.

Tests point ``socket_path`` at :attr:`DockerProxy.url` to prove that something made *no* Docker call (a
refused sidecar), or to see exactly what was sent (the create bodies the hardened-profile audit checks).
Bytes are forwarded unchanged in both directions; only the client's side is parsed, as HTTP/1.1
requests with a ``Content-Length`` body (what docker-py sends), until a connection is upgraded
(attach), after which it is a raw pipe.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOCKER_SOCKET = "/var/run/docker.sock"


@dataclass(frozen=True)
class ApiRequest:
    """One Docker API request as the proxy saw it."""

    method: str
    path: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class DockerProxy:
    """Listen on ``path``, forward to ``upstream``, record every request in :attr:`requests`."""

    def __init__(self, path: Path, upstream: str = DOCKER_SOCKET) -> None:
        self.path = path
        self.upstream = upstream
        self.requests: list[ApiRequest] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def __enter__(self) -> DockerProxy:
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self._listener.listen(64)
        threading.Thread(target=self._accept, name="docker-proxy", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._listener is not None:
            self._listener.close()
        self.path.unlink(missing_ok=True)

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def creates(self) -> list[ApiRequest]:
        """The container create requests (``POST /vX/containers/create``), in order."""
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and r.path.split("?")[0].endswith("/containers/create")]

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        daemon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            daemon.connect(self.upstream)
        except OSError:
            client.close()
            return
        threading.Thread(target=_pump, args=(daemon, client), daemon=True).start()
        buffer, raw = b"", False
        try:
            while data := client.recv(65536):
                daemon.sendall(data)
                if raw:
                    continue
                buffer += data
                buffer, raw = self._take_requests(buffer)
        except OSError:
            pass
        finally:
            for sock in (client, daemon):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def _take_requests(self, buffer: bytes) -> tuple[bytes, bool]:
        """Record every complete request at the start of ``buffer``; return the rest and whether the
        connection was upgraded to a raw stream."""
        while (end := buffer.find(b"\r\n\r\n")) >= 0:
            head = buffer[:end].decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
            length = int(headers.get("content-length", "0"))
            if len(buffer) < end + 4 + length:
                break
            method, path, _ = head[0].split(" ", 2)
            with self._lock:
                self.requests.append(ApiRequest(method, path, buffer[end + 4 : end + 4 + length]))
            buffer = buffer[end + 4 + length :]
            if headers.get("upgrade") or headers.get("connection", "").lower() == "upgrade":
                return b"", True
        return buffer, False


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass
