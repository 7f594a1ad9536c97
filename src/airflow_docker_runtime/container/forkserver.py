"""Fork servers: one long-lived container per runtime spec that imports Airflow once and forks a child per parse.

Used for DAG parsing when the spec says ``fork_server`` (ADR 0007). The container is started by the same
:func:`launcher.launch` as any other, with nothing handed over: its connection becomes the control
connection (and lifeline) of the protocol in ``inside/bootstrap.serve``. Each parse gets a
:class:`ForkedChild`, which looks to the supervisor like a :class:`~.launcher.ContainerProcess`: the
same four channels handed over (now per ``spawn``), signals and exit reported by the server.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import json
import os
import signal
import socket
import threading
import time
from typing import Any

from airflow_docker_runtime.container.docker_args import container_name
from airflow_docker_runtime.container.launcher import launch
from airflow_docker_runtime.container.process import ContainerOutcome, ContainerProcess, ContainerStillRunning, Timings
from airflow_docker_runtime.container.owner import owner_labels
from airflow_docker_runtime.errors import ContainerStartupError
from airflow_docker_runtime.spec import RuntimeSpec

MESSAGE = 64
IDLE_SECONDS = 300.0
"""A server not asked to fork for this long is stopped (checked whenever any server is used)."""


class ForkedChild:
    """One forked parse child, seen by the supervisor as its child process (the ProcessTracker protocol)."""

    ProcessNotFound = ContainerProcess.ProcessNotFound
    TimeoutExpired = ContainerStillRunning

    def __init__(self, server: ForkServer, ident: str) -> None:
        self.server = server
        self.ident = ident
        self.spec = server.spec
        self.id = server.container.id
        self.name = server.name
        self.pid = 0
        self.peak_memory: int | None = None
        self.outcome: ContainerOutcome | None = None
        self._started = threading.Event()
        self._exited = threading.Event()
        self.exit_signal, self._exit_notifier = socket.socketpair()

    @property
    def exited(self) -> bool:
        return self._exited.is_set()

    def send_signal(self, sig: signal.Signals | int) -> None:
        if not self._exited.is_set():
            self.server.send("kill", self.ident, int(sig))

    def wait(self, timeout: float | None) -> int:
        if not self._exited.wait(timeout):
            raise ContainerStillRunning(self.ident)
        assert self.outcome is not None
        return self.outcome.exit_code

    def stop(self) -> None:
        if not self._exited.is_set():
            self.send_signal(signal.SIGKILL)
            self._exited.wait(self.spec.stop_timeout + 5)

    def _finish(self, code: int, note: str = "") -> None:
        if self._exited.is_set():
            return
        self.outcome = ContainerOutcome(exit_code=code, oom_killed=False, startup_logs=note)
        self._exited.set()
        self._started.set()
        self._exit_notifier.close()


class ForkServer:
    """A running fork-server container and the reader of its control connection."""

    def __init__(self, spec: RuntimeSpec, request_args: dict[str, Any]) -> None:
        self.spec = spec
        started = time.monotonic()
        self.name = request_args["name"]
        self.container, self.timings, self.image = launch(spec, request_args, None)
        self.control = self.container.lifeline
        assert self.control is not None
        self._send_lock = threading.Lock()
        self._children: dict[str, ForkedChild] = {}
        self._ids = itertools.count(1)
        self._ready = threading.Event()
        self._said_ready = False
        self._reading = True
        self.last_used = time.monotonic()
        threading.Thread(target=self._read, name=f"adr-forkserver-{self.container.id[:12]}", daemon=True).start()
        if not self._ready.wait(spec.connect_timeout) or not self._said_ready:
            reason = "exited before it was ready" if self._ready.is_set() else "did not become ready within connect_timeout"
            try:
                output = self.container.client.api.logs(self.container.id, tail=40).decode(errors="replace").strip()
            except Exception:
                output = ""
            self.close()
            raise ContainerStartupError(
                f"the fork server for image {spec.image!r} {reason}; is {spec.python!r} a Python with Airflow in the "
                f"image? Container output:\n{output}"
            )
        self.ready_seconds = time.monotonic() - started

    @property
    def alive(self) -> bool:
        return self._said_ready and self._reading and not self.container.exited

    def send(self, *words: object, fds: list[int] | None = None) -> None:
        line = " ".join(str(w) for w in words).encode().ljust(MESSAGE - 1) + b"\n"
        with self._send_lock:
            if fds:
                socket.send_fds(self.control, [line], fds)
            else:
                self.control.sendall(line)

    def spawn(self, child_ends: tuple[socket.socket, ...]) -> ForkedChild:
        """Fork a child in the server and hand it ``child_ends`` (requests, stdout, stderr, logs)."""
        self.last_used = time.monotonic()
        child = ForkedChild(self, str(next(self._ids)))
        self._children[child.ident] = child
        try:
            self.send("spawn", child.ident, fds=[s.fileno() for s in child_ends])
        except OSError as exc:
            self._children.pop(child.ident, None)
            raise ContainerStartupError(f"the fork server for image {self.spec.image!r} is gone: {exc}") from None
        if not child._started.wait(self.spec.connect_timeout):
            raise ContainerStartupError(f"the fork server for image {self.spec.image!r} did not fork within connect_timeout")
        return child

    def _read(self) -> None:
        buffer = b""
        try:
            while True:
                data = self.control.recv(4096)
                if not data:
                    break
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    self._handle(line.split())
        except OSError:
            pass
        finally:
            self._reading = False
            for child in list(self._children.values()):  # the server died: so did every child in it
                child._finish(-signal.SIGKILL, "the fork server exited")
            self._ready.set()

    def _handle(self, words: list[bytes]) -> None:
        if words == [b"ready"]:
            self._said_ready = True
            self._ready.set()
        elif len(words) == 3 and words[0] == b"started" and (child := self._children.get(words[1].decode())):
            child.pid = int(words[2])
            child._started.set()
        elif len(words) == 3 and words[0] == b"exited" and (child := self._children.pop(words[1].decode(), None)):
            child._finish(int(words[2]))

    def close(self) -> None:
        """Stop the server (its children with it) and wait for the container's removal."""
        self.container.stop()


_servers: dict[str, ForkServer] = {}
_servers_lock = threading.Lock()


def launch_forked(spec: RuntimeSpec, request_args: dict[str, Any], child_ends: tuple[socket.socket, ...]):
    """``launch`` for a child of the fork server of ``spec`` (started if needed): (child, timings, image)."""
    started = time.monotonic()
    server, new = server_for(spec, request_args)
    t0 = time.monotonic()
    child = server.spawn(child_ends)
    timings = Timings(image=server.timings.image, create=server.timings.create, start=server.timings.start) if new else Timings()
    timings.connect = (t0 - started if new else 0.0) + (time.monotonic() - t0)  # server ready + fork hand-over
    return child, timings, server.image


def server_for(spec: RuntimeSpec, request_args: dict[str, Any]) -> tuple[ForkServer, bool]:
    """The live server for ``spec`` and the request's mounts and environment (started now if needed:
    second value True). Servers idle for ``IDLE_SECONDS`` are stopped."""
    key = json.dumps([spec.model_dump_json(), request_args.get("bundle_paths"), request_args.get("environment")], sort_keys=True)
    with _servers_lock:
        now = time.monotonic()
        for other_key, other in list(_servers.items()):
            if other_key != key and (now - other.last_used > IDLE_SECONDS or not other.alive):
                del _servers[other_key]
                threading.Thread(target=other.close, daemon=True).start()
        server = _servers.get(key)
        if server is not None and server.alive:
            return server, False
        server_args = {
            **request_args,
            "kind": f"serve-{request_args['kind']}",
            "name": container_name(f"{request_args['kind']}-server", hashlib.sha256(key.encode()).hexdigest()[:12], os.getpid()),
            "labels": {**owner_labels(), "fork_server": "true"},
        }
        server = _servers[key] = ForkServer(spec, server_args)
        return server, True


@atexit.register
def _stop_all() -> None:
    with _servers_lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        try:
            server.close()
        except Exception:
            pass


