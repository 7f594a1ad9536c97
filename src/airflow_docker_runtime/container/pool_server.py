"""The warm pool's server: one process per host user and Docker daemon that keeps task containers ready.

``python -m airflow_docker_runtime.container.pool_server --docker URL --listen PATH [bounds]`` is started
by the first worker process that misses (:meth:`.pool.PoolConnection.start_server`), in a session of its
own, and serves every worker process of the host (ADR 0009). For each key that tries asked for it keeps
up to ``warm_pool_size`` containers started in ``pooled-task`` mode: their bootstrap has connected back,
passed the peer check, and imports Airflow while it waits. A claim hands one over (its connection passes
to the worker, which from then on owns the container); a replacement starts right away.

Bounds: at most ``--max-containers`` idle or starting containers on the host, and no new one while the
idle ones use ``--max-memory`` or more (their cgroups' memory); a key not claimed for
``--idle-timeout`` seconds is dropped with its containers.

Lifetime: the server holds every idle container's lifeline, so when it dies they stop within a second
(ADR 0005) and ``gc`` removes them (their owner labels name this process). It stops by itself, its
containers with it, as soon as no worker process is connected any more (the worker was stopped or killed);
a container it lent to a worker process that died is removed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import queue
import selectors
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_docker_runtime.container import owner
from airflow_docker_runtime.container.client import docker_client, remove_container
from airflow_docker_runtime.container.docker_args import LABEL_PREFIX, RUN_DIR_IN_CONTAINER
from airflow_docker_runtime.container.pool import IDLE_CPU_SHARES
from airflow_docker_runtime.container.rundir import RunDir
from airflow_docker_runtime.spec import parse_size

POOLED_LABEL = f"{LABEL_PREFIX}.pooled"
FIRST_CLIENT_SECONDS = 30.0
"""A server no worker process connected to within this time stops."""
FAILED_KEY_BACKOFF = 60.0
"""A key whose container died before it was ready (a broken image) is not started again for this long;
its tries start cold and report the real error."""
STARTS_AT_ONCE = 2
TICK = 0.25


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pool[{os.getpid()}] {message}", file=sys.stderr, flush=True)


@dataclass
class Entry:
    """One pooled container: started, connected back, and (once it says so) ready."""

    key: str
    id: str
    name: str
    run_dir: RunDir
    conn: socket.socket
    pid: int
    memory_path: Path | None
    born: float
    ready: bool = False

    def memory(self) -> int | None:
        if self.memory_path is None:
            return None
        try:
            return int(self.memory_path.read_text())
        except (OSError, ValueError):
            return None


@dataclass
class Pool:
    """The containers of one key and how many of them to keep."""

    key: str
    template: dict[str, Any]
    size: int
    connect_timeout: float
    cgroup: tuple[str, str]
    target: int = 1
    last_used: float = field(default_factory=time.monotonic)
    entries: list[Entry] = field(default_factory=list)
    starting: int = 0
    failed_until: float = 0.0


@dataclass
class Client:
    sock: socket.socket
    pid: int = 0
    ticks: str = ""


class PoolServer:
    def __init__(self, docker_url: str, listen: Path, max_containers: int, max_memory: int | None, idle_timeout: float) -> None:
        self.docker_url = docker_url
        self.listen_path = listen
        self.max_containers = max_containers
        self.max_memory = max_memory
        self.idle_timeout = idle_timeout
        self.client = docker_client(docker_url)
        self.pools: dict[str, Pool] = {}
        self.clients: dict[int, Client] = {}
        self.lent: dict[str, tuple[Client, Path]] = {}
        self.had_client = False
        self.stopping = False
        self.born = time.monotonic()
        self.selector = selectors.DefaultSelector()
        self.started: queue.SimpleQueue[tuple[Pool, Entry | None]] = queue.SimpleQueue()
        self.wake_r, self.wake_w = socket.socketpair()
        self.starter = ThreadPoolExecutor(STARTS_AT_ONCE, thread_name_prefix="adr-pool-start")
        self.janitor = ThreadPoolExecutor(1, thread_name_prefix="adr-pool-remove")
        self.owner_labels = {f"{LABEL_PREFIX}.{k}": v for k, v in owner.owner_labels().items()}

    # -- main loop ------------------------------------------------------------------------------------
    def serve(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listen_path.unlink(missing_ok=True)
        listener.bind(str(self.listen_path))
        self.listen_path.chmod(0o600)
        listener.listen(64)
        self.selector.register(listener, selectors.EVENT_READ, "listener")
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        log(f"serving {self.docker_url} at {self.listen_path} (max {self.max_containers} containers, "
            f"max memory {self.max_memory or 'unbounded'}, idle timeout {self.idle_timeout:g}s)")
        try:
            while not self.stopping:
                for selected, _ in self.selector.select(TICK):
                    what = selected.data
                    if what == "listener":
                        sock, _ = listener.accept()
                        client = Client(sock)
                        self.clients[sock.fileno()] = client
                        self.selector.register(sock, selectors.EVENT_READ, client)
                    elif what == "wake":
                        self.wake_r.recv(4096)
                    elif isinstance(what, Client):
                        self.on_client(what)
                    elif isinstance(what, Entry):
                        self.on_container(what)
                self.collect_started()
                self.maintain()
        finally:
            listener.close()
            self.listen_path.unlink(missing_ok=True)
            self.shutdown()

    def stop(self, *_: object) -> None:
        self.stopping = True
        try:
            self.wake_w.send(b"x")
        except OSError:
            pass

    # -- requests from worker processes ---------------------------------------------------------------
    def on_client(self, client: Client) -> None:
        try:
            data = client.sock.recv(1 << 20)
            message = json.loads(data) if data else None
        except (OSError, ValueError):
            message = None
        if message is None:
            self.selector.unregister(client.sock)
            self.clients.pop(client.sock.fileno(), None)
            client.sock.close()
            return
        op = message.get("op")
        if op == "hello":  # a worker process (a probe that only checks the server runs never says hello)
            client.pid, client.ticks = int(message.get("pid") or 0), str(message.get("ticks") or "")
            self.had_client = True
        elif op == "claim":
            self.claim(client, str(message.get("key")))
        elif op == "want":
            self.want(message)
        elif op == "done":
            self.lent.pop(str(message.get("id")), None)

    def claim(self, client: Client, key: str) -> None:
        pool = self.pools.get(key)
        entry = None
        if pool is not None:
            pool.last_used = time.monotonic()
            # A ready container first; else one still importing: it is further along than a cold start.
            candidates = [e for e in pool.entries if e.ready] or pool.entries
            entry = candidates[0] if candidates else None
            if entry is None or not entry.ready:  # tries come faster than containers get ready: keep more
                pool.target = min(pool.size, pool.target + 1)
        if entry is None:
            self._send(client, {"hit": False})
            return
        pool.entries.remove(entry)
        self.selector.unregister(entry.conn)
        reply = {"hit": True, "id": entry.id, "name": entry.name, "run_dir": str(entry.run_dir.path), "pid": entry.pid, "ready": entry.ready}
        if self._send(client, reply, entry.conn.fileno()):
            self.lent[entry.id] = (client, entry.run_dir.path)
            entry.conn.close()
        else:
            self.discard(entry)

    def want(self, message: dict[str, Any]) -> None:
        key = str(message["key"])
        size = max(0, int(message.get("size") or 0))
        pool = self.pools.get(key)
        if pool is None:
            cgroup = message.get("cgroup") or ["/sys/fs/cgroup", "docker"]
            pool = self.pools[key] = Pool(
                key, message["template"], size, float(message.get("connect_timeout") or 60), (str(cgroup[0]), str(cgroup[1]))
            )
        else:  # another miss: the key needs more containers ready at once
            pool.size = size
            pool.target = min(size, pool.target + 1)
        pool.target = min(pool.target, size)
        pool.last_used = time.monotonic()

    def _send(self, client: Client, reply: dict[str, Any], fd: int | None = None) -> bool:
        try:
            socket.send_fds(client.sock, [json.dumps(reply).encode()], [fd] if fd is not None else [])
            return True
        except OSError:
            return False

    # -- pooled containers ----------------------------------------------------------------------------
    def on_container(self, entry: Entry) -> None:
        try:
            data = entry.conn.recv(64)
        except OSError:
            data = b""
        if data.startswith(b"ready"):
            entry.ready = True
            log(f"{entry.name} ready for key {entry.key[:8]} in {time.monotonic() - entry.born:.2f}s")
            return
        pool = self.pools.get(entry.key)
        if pool is not None and entry in pool.entries:
            pool.entries.remove(entry)
            if not entry.ready:
                pool.failed_until = time.monotonic() + FAILED_KEY_BACKOFF
                log(f"container {entry.name} exited before it was ready; not warming this key for {FAILED_KEY_BACKOFF:g}s")
        self.selector.unregister(entry.conn)
        self.discard(entry)

    def start_container(self, pool: Pool) -> None:
        """Thread: create, start and connect one container of ``pool`` (``None`` queued on failure)."""
        entry = None
        run_dir = None
        container_id = None
        born = time.monotonic()
        try:
            run_dir = RunDir()
            kwargs = copy.deepcopy(pool.template)
            for mount in kwargs.get("mounts", []):
                if mount.get("Target") == RUN_DIR_IN_CONTAINER:
                    mount["Source"] = str(run_dir.path)
            kwargs["command"] = [*kwargs["command"][:-1], f"pooled-{kwargs['command'][-1]}"]
            kwargs["name"] = f"adr-pool-{pool.key[:8]}-{uuid.uuid4().hex[:8]}"
            kwargs["labels"] = {**kwargs.get("labels", {}), **self.owner_labels, POOLED_LABEL: "true"}
            # Idle containers import Airflow at the lowest CPU weight, so they never slow a running try; the
            # worker that claims one gives it the normal weight back (pool.IDLE_CPU_SHARES).
            kwargs["cpu_shares"] = IDLE_CPU_SHARES
            run_dir.listen(kwargs.get("user"))
            container = self.client.containers.create(**kwargs)
            container_id = container.id
            container.start()
            pid = int(self.client.api.inspect_container(container_id)["State"].get("Pid") or 0)
            conn = run_dir.accept(
                lambda: pid, time.monotonic() + pool.connect_timeout,
                lambda: None if pid > 0 and Path(f"/proc/{pid}").exists() else "the container exited before connecting",
            )
            run_dir.close()
            entry = Entry(pool.key, container_id, kwargs["name"], run_dir, conn, pid, _memory_path(pool.cgroup, container_id), born)
        except Exception as exc:
            log(f"could not start a pooled container for key {pool.key[:8]}: {type(exc).__name__}: {exc}")
            if container_id is not None:
                self._remove(container_id)
            if run_dir is not None:
                run_dir.close()
                run_dir.remove()
        self.started.put((pool, entry))
        self.wake_w.send(b"x")

    def collect_started(self) -> None:
        while True:
            try:
                pool, entry = self.started.get_nowait()
            except queue.Empty:
                return
            pool.starting -= 1
            if entry is None:
                pool.failed_until = time.monotonic() + FAILED_KEY_BACKOFF
            elif self.stopping or self.pools.get(pool.key) is not pool:
                self.discard(entry)
            else:
                pool.entries.append(entry)
                self.selector.register(entry.conn, selectors.EVENT_READ, entry)

    def discard(self, entry: Entry) -> None:
        """Close a container's lifeline (it stops itself at once) and remove it and its run directory."""
        entry.conn.close()
        self.janitor.submit(self._remove, entry.id, entry.run_dir.path)

    def _remove(self, container_id: str, run_dir: Path | None = None) -> None:
        try:
            remove_container(self.client, container_id)
        except Exception as exc:
            log(f"could not remove {container_id[:12]}: {exc}")
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)

    # -- bookkeeping ----------------------------------------------------------------------------------
    def maintain(self) -> None:
        now = time.monotonic()
        workers = [c for c in self.clients.values() if c.pid]
        if not workers and (self.had_client or now - self.born > FIRST_CLIENT_SECONDS):
            log("no worker process is connected any more: stopping the pool")
            self.stopping = True
            return
        for key, pool in list(self.pools.items()):
            if now - pool.last_used > self.idle_timeout:
                log(f"key {key[:8]} idle for {self.idle_timeout:g}s: dropping {len(pool.entries)} containers")
                del self.pools[key]
                for entry in pool.entries:
                    self.selector.unregister(entry.conn)
                    self.discard(entry)
        for container_id, (client, run_dir) in list(self.lent.items()):
            if not owner.owner_alive(client.pid, client.ticks):  # its worker process died during the try
                del self.lent[container_id]
                self.janitor.submit(self._remove, container_id, run_dir)
        self.top_up()

    def top_up(self) -> None:
        now = time.monotonic()
        pools = [p for p in self.pools.values() if p.failed_until <= now]
        starting = sum(p.starting for p in self.pools.values())
        idle = sum(len(p.entries) for p in self.pools.values()) + starting
        for pool in sorted(pools, key=lambda p: len(p.entries) + p.starting):
            while len(pool.entries) + pool.starting < pool.target:
                if idle >= self.max_containers or starting >= STARTS_AT_ONCE or self._memory_full():
                    return
                pool.starting += 1
                starting += 1
                idle += 1
                self.starter.submit(self.start_container, pool)

    def _memory_full(self) -> bool:
        if not self.max_memory:
            return False
        used = sum(e.memory() or 0 for p in self.pools.values() for e in p.entries)
        return used >= self.max_memory

    def shutdown(self) -> None:
        """Stop every idle container (closing its lifeline stops it) and remove it; lent ones stay their worker's."""
        self.starter.shutdown(wait=True, cancel_futures=True)
        self.collect_started()
        for pool in self.pools.values():
            for entry in pool.entries:
                self.discard(entry)
        self.pools.clear()
        self.janitor.shutdown(wait=True)
        log("stopped")


def _memory_path(cgroup: tuple[str, str], container_id: str) -> Path | None:
    """The file with the container's current memory use (cgroup v1 or v2), if this host has one."""
    root, subpath = Path(cgroup[0]), cgroup[1]
    for path in (
        root / "memory" / subpath / container_id / "memory.usage_in_bytes",
        root / subpath / container_id / "memory.current",
        root / "system.slice" / f"docker-{container_id}.scope" / "memory.current",
    ):
        if path.exists():
            return path
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="airflow_docker_runtime.container.pool_server", description=__doc__.splitlines()[0])
    parser.add_argument("--docker", required=True, help="Docker daemon URL (socket_path)")
    parser.add_argument("--listen", required=True, type=Path, help="this server's unix socket")
    parser.add_argument("--max-containers", type=int, default=8)
    parser.add_argument("--max-memory", default="1g")
    parser.add_argument("--idle-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    server = PoolServer(args.docker, args.listen, args.max_containers, parse_size(args.max_memory) if args.max_memory else None, args.idle_timeout)
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
