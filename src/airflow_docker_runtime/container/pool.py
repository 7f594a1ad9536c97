"""The warm pool, worker side: take a started, preloaded container for a try, and say what to keep warm.

One pool server per host user and Docker daemon (:mod:`.pool_server`, ADR 0009) keeps containers started
for the runtime specs that tries asked for; their bootstrap has already imported the task runner and its
start-up modules and waits for the four channels. Every worker process of the host talks to it over one
``SOCK_SEQPACKET`` unix socket in a directory only this user can enter:

* ``claim`` a container for a key: the server answers with the container (id, run directory, init PID)
  and passes its bootstrap connection (SCM_RIGHTS). The worker hands the try's channels over that
  connection exactly as after a cold start, keeps it as the container's lifeline, and renames the
  container to the try's name. One container serves exactly one try.
* ``want`` a key after a miss: the server starts containers for it (from the create arguments the worker
  sends) up to ``warm_pool_size``, within the host's bounds.
* ``done``: the claimed container is gone (removed by the worker as after any try).

The key is everything ``docker create`` fixes: the create arguments without the name, the try's identity
labels and the run directory, with the image's **id** in place of its reference -- so a re-tagged image,
or any changed limit, mount, variable or user, misses instead of being served by a stale container.
A miss is a cold start, never an error.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors

from airflow_docker_runtime.container import owner
from airflow_docker_runtime.container.client import remove_container
from airflow_docker_runtime.container.docker_args import LABEL_PREFIX
from airflow_docker_runtime.container.process import ContainerProcess
from airflow_docker_runtime.container.rundir import HANDSHAKE, RUN_DIR_BASE
from airflow_docker_runtime.spec import RuntimeSpec

RUN_DIR_PLACEHOLDER = Path("/nonexistent/airflow-docker-runtime/pooled")
"""The run directory in a key's create arguments: the pool server puts each container's own there."""

IDENTITY_LABELS = frozenset(
    f"{LABEL_PREFIX}.{key}"
    for key in ("dag_id", "task_id", "run_id", "map_index", "try_number", "ti_id", "dag_file")
    + (owner.WORKER, owner.BOOT_ID, owner.PID, owner.STARTED)
)
"""Labels that name a try or its supervisor: unknown when a pooled container is created, so not in a key."""

MESSAGE_SIZE = 1 << 16
"""Largest reply the pool server sends (a claim: a few hundred bytes)."""
IDLE_CPU_SHARES = 2
"""CPU weight of a pooled container until it is claimed (Docker's default, and a claimed one's, is 1024)."""
RUNNING_CPU_SHARES = 1024


def serves(spec: RuntimeSpec, kind: str) -> bool:
    """Whether a try of ``spec`` may be served from the pool (tasks; containers removed after the try)."""
    return kind == "task" and spec.warm_pool_size > 0 and spec.remove_container_after_exit and not spec.fork_server


def pool_template(kwargs: dict[str, Any], image_id: str) -> tuple[str, dict[str, Any]]:
    """The key and the create arguments of pooled containers for a try's create ``kwargs``."""
    template = copy.deepcopy(kwargs)
    template.pop("name", None)
    template["image"] = image_id
    template["labels"] = {k: v for k, v in template.get("labels", {}).items() if k not in IDENTITY_LABELS}
    canonical = json.dumps(template, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32], json.loads(canonical)


def pool_address(socket_path: str, uid: int | None = None) -> Path:
    """The pool server's socket for the daemon at ``socket_path`` (one per host user and daemon)."""
    uid = os.getuid() if uid is None else uid
    return RUN_DIR_BASE / f"pool-{uid}" / f"{hashlib.sha256(socket_path.encode()).hexdigest()[:12]}.sock"


def host_bounds() -> list[str]:
    """The pool server's command-line bounds from ``[docker_runtime]`` (the operator's settings)."""
    from airflow.configuration import conf

    args = []
    for key, flag in (
        ("warm_pool_max_containers", "--max-containers"),
        ("warm_pool_max_memory", "--max-memory"),
        ("warm_pool_idle_timeout", "--idle-timeout"),
    ):
        value = conf.get("docker_runtime", key, fallback=None)
        if value not in (None, ""):
            args += [flag, str(value)]
    return args


class PoolConnection:
    """This process's connection to the pool server (started here when there is none)."""

    def __init__(self, socket_path: str, bounds: list[str] | None = None) -> None:
        self.socket_path = socket_path
        self.address = pool_address(socket_path)
        self.bounds = bounds
        self.sock: socket.socket | None = None
        self._lock = threading.Lock()

    # -- connection -----------------------------------------------------------------------------------
    def _connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(str(self.address))
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            if int.from_bytes(creds[4:8], "little") != os.getuid():  # only our own user's pool may serve us
                raise ConnectionRefusedError("the pool socket belongs to another user")
            return sock
        except OSError:
            sock.close()
            return None

    def connected(self) -> socket.socket | None:
        """The open connection, or None when no pool server answers (a miss, never a wait)."""
        if self.sock is None:
            sock = self._connect()
            if sock is not None:
                try:  # a registered worker process: the pool lives while one is connected
                    sock.sendall(json.dumps({"op": "hello", "pid": os.getpid(), "ticks": owner.process_start_ticks(os.getpid())}).encode())
                    self.sock = sock
                except OSError:
                    sock.close()
        return self.sock

    def start_server(self) -> None:
        """Start this host's pool server unless one runs; one start at a time across processes (a file lock)."""
        directory = self.address.parent
        directory.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
        directory.mkdir(mode=0o700, exist_ok=True)
        if directory.stat().st_uid != os.getuid() or directory.stat().st_mode & 0o077:
            return  # not ours, or not private: never serve tries from it
        with open(directory / (self.address.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            probe = self._connect()
            if probe is not None:
                probe.close()
                return
            bounds = self.bounds if self.bounds is not None else host_bounds()
            with open(directory / (self.address.stem + ".log"), "ab") as log:
                server = subprocess.Popen(
                    [sys.executable, "-m", "airflow_docker_runtime.container.pool_server",
                     "--docker", self.socket_path, "--listen", str(self.address), *bounds],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
                )
            # It outlives this process if need be (a session of its own); while we live, we reap it.
            threading.Thread(target=server.wait, name="adr-pool-reaper", daemon=True).start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and server.poll() is None:
                probe = self._connect()  # a dead server's socket file may still be there: connect, not stat
                if probe is not None:
                    probe.close()
                    return
                time.sleep(0.02)

    def _request(self, message: dict[str, Any], *, reply: bool) -> tuple[dict[str, Any], list[int]] | None:
        with self._lock:
            sock = self.connected()
            if sock is None:
                return None
            try:
                sock.sendall(json.dumps(message).encode())
                if not reply:
                    return {}, []
                data, fds, _flags, _addr = socket.recv_fds(sock, MESSAGE_SIZE, 1)
                if not data:
                    raise ConnectionResetError("the pool server closed the connection")
                return json.loads(data), fds
            except (OSError, ValueError):
                sock.close()
                self.sock = None
                return None

    # -- operations -----------------------------------------------------------------------------------
    def claim(self, key: str) -> tuple[dict[str, Any], socket.socket] | None:
        answer = self._request({"op": "claim", "key": key}, reply=True)
        if answer is None:
            return None
        reply, fds = answer
        if not reply.get("hit") or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            return None
        return reply, socket.socket(fileno=fds[0])

    def want(self, key: str, template: dict[str, Any], spec: RuntimeSpec) -> None:
        """Ask the pool to keep containers of ``key`` ready (starting the pool server if none runs, or if
        the one we knew has died since)."""
        message = {
            "op": "want",
            "key": key,
            "template": template,
            "size": spec.warm_pool_size,
            "connect_timeout": spec.connect_timeout,
            "cgroup": [spec.cgroup_mount_path, spec.docker_cgroup_subpath],
        }
        if self._request(message, reply=False) is None:
            self.start_server()
            self._request(message, reply=False)

    def done(self, container_id: str) -> None:
        self._request({"op": "done", "id": container_id}, reply=False)


_connections: dict[str, PoolConnection] = {}
_connections_lock = threading.Lock()


def connection(socket_path: str) -> PoolConnection:
    with _connections_lock:
        conn = _connections.get(socket_path)
        if conn is None:
            conn = _connections[socket_path] = PoolConnection(socket_path)
        return conn


def disconnect() -> None:
    """Close this process's connections to pool servers: a pool with no worker process left stops."""
    with _connections_lock:
        conns = list(_connections.values())
        _connections.clear()
    for conn in conns:
        with conn._lock:
            if conn.sock is not None:
                conn.sock.close()
                conn.sock = None


def claim(
    client: docker.DockerClient,
    spec: RuntimeSpec,
    image: dict[str, Any],
    kwargs: dict[str, Any],
    name: str,
    child_ends: tuple[socket.socket, ...],
) -> tuple[ContainerProcess, float] | None:
    """Serve a try from the pool: the container, channels handed over, and the seconds the claim took.

    None on a miss (the pool is then asked to keep containers of this kind warm).
    """
    started = time.monotonic()
    key, template = pool_template(kwargs, image["Id"])
    pool = connection(spec.socket_path)
    for _ in range(3):  # a container that died since the pool last looked is skipped, not served
        claimed = pool.claim(key)
        if claimed is None:
            break
        reply, conn = claimed
        if _hand_over(conn, child_ends):
            process = ContainerProcess(client, reply["id"], spec, Path(reply["run_dir"]), name=name)
            process.host_pid = int(reply["pid"])
            process.lifeline, process.connected = conn, True
            process.on_removed.append(lambda: pool.done(reply["id"]))
            process.start_waiting(first=lambda: _adopt(client, reply["id"], name))
            return process, time.monotonic() - started
        conn.close()
        try:
            remove_container(client, reply["id"])
        except Exception:  # its pool or `gc` removes it; this try goes on with the next container
            pass
    threading.Thread(target=pool.want, args=(key, template, spec), name="adr-pool-want", daemon=True).start()
    return None


def _hand_over(conn: socket.socket, child_ends: tuple[socket.socket, ...]) -> bool:
    """Send the try's channels to a pooled container's bootstrap; False if it is gone."""
    try:
        if conn.recv(64, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
            return False  # end of file: the container exited while idle
    except BlockingIOError:
        pass  # nothing to read: alive and still importing
    except OSError:
        return False
    try:
        socket.send_fds(conn, [HANDSHAKE], [s.fileno() for s in child_ends])
    except OSError:
        return False
    return True


def _adopt(client: docker.DockerClient, container_id: str, name: str) -> None:
    """Make a claimed container the try's: the normal CPU weight, and the try's deterministic name (a
    leftover of the same name is removed). Off the try's path: the try already runs."""
    try:
        client.api.update_container(container_id, cpu_shares=RUNNING_CPU_SHARES)
    except Exception:  # gone already (the try ended): nothing to adopt
        return
    for _ in range(2):
        try:
            client.api.rename(container_id, name)
            return
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                return
            remove_container(client, name)
        except Exception:
            return

