"""Runs inside the container: take the supervisor's sockets, then become the upstream Airflow child.

Standard library and Airflow only: this file is bind-mounted read-only into images that do not have
airflow-docker-runtime installed. ``python bootstrap.py <socket> <mode>``:

1. connect to the supervisor's unix socket (in the per-run directory mounted into the container),
2. receive the four ends Airflow's supervisor would give a forked child (requests, stdout, stderr,
   logs) as file descriptors (SCM_RIGHTS),
3. hand them to Airflow's own child entry point, exactly as after ``fork()`` on the worker.

Modes: ``task`` / ``parse`` do the three steps at once (a cold start). ``pooled-task`` is a container of
the warm pool: it connects, imports everything the child will need (:func:`preload`), says ``ready`` and
only then waits for step 2, so the try that takes it starts as fast as a forked child. ``serve-task`` /
``serve-parse`` is a fork server (:func:`serve`).

Before the upstream child runs, :func:`version_mismatch` compares the image's Airflow with the worker's
(passed in :data:`WORKER_VERSIONS_ENV`): a supervisor cannot talk to a child of another minor version, so
the container says so in one line and exits with :data:`VERSION_MISMATCH` instead of failing obscurely.

The connection of step 1 stays open as the container's lifeline: the supervisor never closes it while
the container runs, so when it reads end-of-file the supervisor is gone (worker killed) and the container
stops itself at once instead of running on unsupervised.
"""

import os
import socket
import sys
import threading

HANDSHAKE = b"airflow-docker-runtime/1"

WORKER_VERSIONS_ENV = "AIRFLOW_DOCKER_RUNTIME_WORKER_VERSIONS"
"""The worker's versions of :data:`DISTRIBUTIONS`, ``core=3.3.2;task-sdk=1.3.2`` (set by the worker)."""
DISTRIBUTIONS = (("task-sdk", "apache-airflow-task-sdk"), ("core", "apache-airflow-core"))
"""(short name, distribution) whose minor version must match the worker's: the supervisor's protocol is theirs."""
VERSION_MISMATCH = 72
"""Exit code of a container whose Airflow is not the worker's minor version."""


def installed_versions():
    """``{short name: version or None}`` of :data:`DISTRIBUTIONS` in this Python."""
    from importlib import metadata

    versions = {}
    for short, name in DISTRIBUTIONS:
        try:
            versions[short] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[short] = None
    return versions


def encode_versions(versions):
    return ";".join(f"{short}={version}" for short, version in versions.items() if version)


def version_mismatch(worker, image):
    """The line to fail with when ``image`` (:func:`installed_versions`) cannot serve a supervisor of
    ``worker`` (:func:`encode_versions` form): a distribution missing or of another major.minor; else None."""
    wanted = dict(part.split("=", 1) for part in worker.split(";") if "=" in part)
    for short, name in DISTRIBUTIONS:
        if short not in wanted:
            continue
        minor = ".".join(wanted[short].split(".")[:2])
        have = image.get(short)
        if have is None or ".".join(have.split(".")[:2]) != minor:
            return (
                f"airflow-docker-runtime: image has {name} {have or '(not installed)'}, this worker {wanted[short]}: "
                f"the image must have the worker's minor version ({minor})"
            )
    return None


def check_versions():
    """:func:`version_mismatch` for this container (None when the worker did not say its versions)."""
    worker = os.environ.get(WORKER_VERSIONS_ENV)
    return version_mismatch(worker, installed_versions()) if worker else None


def fail_version_mismatch(message):
    """Say ``message`` on stderr and end the container with :data:`VERSION_MISMATCH`."""
    os.write(2, message.encode() + b"\n")
    os._exit(VERSION_MISMATCH)


def connect(path):
    """The control connection to the supervisor's socket at ``path``, handshake sent."""
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.connect(path)
    control.sendall(HANDSHAKE)
    return control


def receive_channels(control):
    """Receive (requests, stdout, stderr, logs_fd) from the supervisor over ``control``."""
    message, fds, _flags, _addr = socket.recv_fds(control, 64, 4)
    if not message:
        os._exit(70)  # the supervisor (or the warm pool) is gone before handing anything over
    if message != HANDSHAKE or len(fds) != 4:
        raise SystemExit(f"airflow-docker-runtime: bad handshake from the supervisor ({message!r}, {len(fds)} fds)")
    requests, stdout, stderr = (socket.socket(fileno=fd) for fd in fds[:3])
    return requests, stdout, stderr, fds[3]


def watch_lifeline(control):
    """End this process -- and with it the container -- when the supervisor's end of ``control`` closes."""
    container_log = os.dup(2)  # the container's own stderr (docker logs), before it becomes the task's

    def watch():
        try:
            while control.recv(64):
                pass
        except OSError:
            pass
        os.write(container_log, b"airflow-docker-runtime: the supervisor is gone; stopping the container\n")
        os._exit(70)

    threading.Thread(target=watch, name="adr-lifeline", daemon=True).start()


def child_target(kind):
    """The upstream function a forked child would run for ``kind``."""
    if kind == "task":
        from airflow.sdk.execution_time.supervisor import _subprocess_main

        return _subprocess_main
    if kind == "parse":
        from airflow.dag_processing.processor import _parse_file_entrypoint

        return _parse_file_entrypoint
    raise SystemExit(f"airflow-docker-runtime: unknown child kind {kind!r}")


START_UP_MODULES = {
    "task": (
        "airflow.sdk.execution_time.task_runner",
        "airflow.dag_processing.dagbag",
        "airflow.sdk",
        "airflow.sdk.log",
        "airflow.sdk.serde",
        "airflow.sdk.plugins_manager",
        "airflow.sdk.execution_time.timeout",
        "airflow.sdk.definitions.mappedoperator",
        "setproctitle",
    ),
    "parse": ("airflow.dag_processing.dagbag", "airflow.sdk"),
}
"""What the upstream child imports lazily before it runs the DAG file's code: imported ahead by a warm
container or fork server, so a try or parse it serves does not pay for them."""


def preload(kind):
    """Import the child's code and its start-up modules (what a forked child inherits from the worker)."""
    import importlib

    child_target(kind)
    importlib.import_module("airflow.sdk.execution_time.supervisor")
    for name in START_UP_MODULES.get(kind, ()):
        try:
            importlib.import_module(name)
        except ImportError:  # an image without an optional module imports it later, or never
            pass


def become_child(requests, stdout, stderr, logs_fd, kind):
    """Point fds 1 and 2 at the supervisor's channels and run the upstream child; never returns."""
    mismatch = check_versions()
    if mismatch:  # in the container's own log too: the worker reads it to report the exit
        os.write(2, mismatch.encode() + b"\n")
    # From here on, even an ImportError (an image without Airflow) lands in the task log.
    os.dup2(stdout.fileno(), 1)
    os.dup2(stderr.fileno(), 2)
    if mismatch:  # before any Airflow import: the image's Airflow cannot talk to this supervisor
        fail_version_mismatch(mismatch)
    os.environ.setdefault("_AIRFLOW_PROCESS_CONTEXT", "client")
    from airflow.sdk.execution_time.supervisor import _fork_main

    _fork_main(requests, stdout, stderr, logs_fd, child_target(kind))


MESSAGE = 64  # fork-server messages are fixed-size lines, padded with spaces


def send_line(control, lock, *words):
    line = " ".join(str(w) for w in words).encode()
    with lock:
        control.sendall(line.ljust(MESSAGE - 1) + b"\n")


def serve(control, kind):
    """Fork server: import the child's code once, then fork one child per ``spawn`` (with its 4 fds).

    Protocol on the control connection, fixed-size lines: in ``spawn <id>`` (+ requests, stdout, stderr,
    logs as SCM_RIGHTS) and ``kill <id> <signal>``; out ``ready``, ``started <id> <pid>`` and
    ``exited <id> <code>`` (negative: killed by that signal). End-of-file: the supervisor is gone.
    """
    import signal

    mismatch = check_versions()
    if mismatch:  # before "ready": the server fails, and its output (this line) is the parse's error
        fail_version_mismatch(mismatch)
    preload(kind)  # the expensive imports, once
    lock = threading.Lock()
    children = {}

    def reap(pid, ident):
        _, status = os.waitpid(pid, 0)
        children.pop(ident, None)
        send_line(control, lock, "exited", ident, os.waitstatus_to_exitcode(status))

    send_line(control, lock, "ready")
    while True:
        message, fds, _flags, _addr = socket.recv_fds(control, MESSAGE, 4)
        if not message:
            os._exit(70)  # the supervisor is gone: the container ends, every child with it
        words = message.split()
        if words[:1] == [b"spawn"] and len(fds) == 4:
            ident = words[1].decode()
            pid = os.fork()
            if pid == 0:
                control.close()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                requests, stdout, stderr = (socket.socket(fileno=fd) for fd in fds[:3])
                become_child(requests, stdout, stderr, fds[3], kind)
                os._exit(1)
            for fd in fds:
                os.close(fd)
            children[ident] = pid
            send_line(control, lock, "started", ident, pid)
            threading.Thread(target=reap, args=(pid, ident), daemon=True).start()
        elif words[:1] == [b"kill"] and words[1].decode() in children:
            try:
                os.kill(children[words[1].decode()], int(words[2]))
            except (ProcessLookupError, KeyError):
                pass
        else:
            for fd in fds:
                os.close(fd)


def main():
    path, mode = sys.argv[1], sys.argv[2]
    if mode.startswith("serve-"):
        serve(connect(path), mode[len("serve-"):])
    control = connect(path)
    kind = mode
    if mode.startswith("pooled-"):
        kind = mode[len("pooled-"):]
        if not check_versions():  # a mismatched image imports nothing; the try that claims it gets the message
            preload(kind)
        control.sendall(b"ready\n")  # the pool may now hand this container to a try
    requests, stdout, stderr, logs_fd = receive_channels(control)
    watch_lifeline(control)
    become_child(requests, stdout, stderr, logs_fd, kind)


if __name__ == "__main__":
    main()
