"""The per-run directory: one unix socket a container's bootstrap connects to, and the check of who connected.

The directory is bind-mounted read-only into exactly one container (``docker_args.RUN_DIR_IN_CONTAINER``):
the bootstrap can connect to the socket (a read-only mount does not stop ``connect``), but nothing in
the container can create a file on the host through it. A connection is accepted only from a process
whose cgroups are exactly those of the container's init, and only after the handshake.
"""

from __future__ import annotations

import os
import selectors
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from airflow_docker_runtime.container import owner
from airflow_docker_runtime.container.docker_args import SOCKET_NAME
from airflow_docker_runtime.errors import ContainerStartupError

HANDSHAKE = b"airflow-docker-runtime/1"
RUN_DIR_BASE = Path(tempfile.gettempdir()) / "airflow-docker-runtime"
"""Per-run directories live here. The Docker daemon must see the same path (a local daemon)."""
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the terminating NUL


def numeric_user(user: str | None) -> tuple[int, int] | None:
    """``uid[:gid]`` as numbers; None for a user name or the image's default."""
    uid, _, gid = (user or "").partition(":")
    if uid.isdigit() and (not gid or gid.isdigit()):
        return int(uid), int(gid) if gid else -1
    return None


class RunDir:
    """A fresh private directory with a listening socket for one container's bootstrap."""

    def __init__(self, base: Path | None = None) -> None:
        base = base or RUN_DIR_BASE
        try:
            base.mkdir(mode=0o711, parents=True, exist_ok=True)
            # The owner in the name lets `airflow docker-runtime gc` delete directories of dead supervisors.
            self.path = Path(tempfile.mkdtemp(prefix=f"run-{owner.owner_tag()}-", dir=base))
        except OSError as exc:
            raise ContainerStartupError(f"cannot prepare the run directory under {base}: {exc}") from None
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def listen(self, user: str | None) -> None:
        """Listen on the socket, reachable by ``user`` (the container's user from its create arguments)."""
        socket_path = self.path / SOCKET_NAME
        if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
            raise ContainerStartupError(
                f"the run directory's socket path {socket_path} is longer than a unix socket allows "
                f"({MAX_SOCKET_PATH} bytes): point TMPDIR of the worker at a shorter directory"
            )
        ids = numeric_user(user)
        # With a numeric user only that uid (and the worker) may enter the directory. A user name is
        # resolved inside the image -- and a worker not running as root cannot chown -- so then the
        # directory is traversable but not listable, the name random, and the peer check rejects any
        # process outside the container.
        private = ids is not None and _chown(self.path, ids)
        if not private:
            self.path.chmod(0o711)
        self.listener.bind(str(socket_path))
        if not (private and _chown(socket_path, ids)):
            socket_path.chmod(0o666)
        self.listener.listen(4)
        self.listener.setblocking(False)

    def accept(self, container_pid: Callable[[], int], deadline: float, exited: Callable[[], str | None]) -> socket.socket:
        """The bootstrap's connection, handshake read, from inside the container whose init is ``container_pid()``.

        ``exited()`` returns a reason once the container is known to have exited (the wait is then over);
        :class:`ContainerStartupError` when ``deadline`` (monotonic) passes first.
        """
        with selectors.DefaultSelector() as selector:
            selector.register(self.listener, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ContainerStartupError("did not connect back in time")
                if (reason := exited()) is not None:
                    raise ContainerStartupError(reason)
                if not selector.select(timeout=min(remaining, 0.05)):
                    continue
                try:
                    conn, _ = self.listener.accept()
                except BlockingIOError:
                    continue
                try:
                    conn.setblocking(True)
                    conn.settimeout(max(1.0, deadline - time.monotonic()))
                    if peer_is_in(conn, container_pid()) and conn.recv(len(HANDSHAKE)) == HANDSHAKE:
                        conn.settimeout(None)
                        return conn
                except OSError:
                    pass
                conn.close()

    def close(self) -> None:
        """Stop listening (the socket file stays until :meth:`remove`)."""
        self.listener.close()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _chown(path: Path, ids: tuple[int, int] | None) -> bool:
    """Give ``path`` to ``ids`` (uid, gid); False when this process may not (it is not root)."""
    if ids is None:
        return False
    try:
        os.chown(path, *ids)
        return True
    except PermissionError:
        return False


def _cgroups(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None


def peer_is_in(conn: socket.socket, container_pid: int) -> bool:
    """True when the peer of ``conn`` is in exactly the cgroups of the container whose init is ``container_pid``.

    ``/proc/<pid>/cgroup`` is readable by any user (unlike ``/proc/<pid>/ns``), and a process cannot leave
    its container's cgroups: the cgroup filesystem is read-only inside the container.
    """
    if container_pid <= 0:
        return False
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    peer = int.from_bytes(creds[:4], "little")
    expected = _cgroups(container_pid)
    return bool(expected) and peer > 0 and _cgroups(peer) == expected
