"""Runs inside the container: take the supervisor's sockets, then become the upstream Airflow child.

Standard library and Airflow only: this file is bind-mounted read-only into images that do not have
airflow-docker-runtime installed. ``python bootstrap.py <socket> task|parse``:

1. connect to the supervisor's unix socket (in the per-run directory mounted into the container),
2. receive the four ends Airflow's supervisor would give a forked child (requests, stdout, stderr,
   logs) as file descriptors (SCM_RIGHTS),
3. hand them to Airflow's own child entry point, exactly as after ``fork()`` on the worker.

The connection of step 1 stays open as the container's lifeline: the supervisor never closes it while
the container runs, so when it reads end-of-file the supervisor is gone (worker killed) and the container
stops itself at once instead of running on unsupervised.
"""

import os
import socket
import sys
import threading

HANDSHAKE = b"airflow-docker-runtime/1"


def receive_channels(path):
    """Connect to ``path`` and receive (control, requests, stdout, stderr, logs_fd)."""
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.connect(path)
    control.sendall(HANDSHAKE)
    message, fds, _flags, _addr = socket.recv_fds(control, 64, 4)
    if message != HANDSHAKE or len(fds) != 4:
        raise SystemExit(f"airflow-docker-runtime: bad handshake from the supervisor ({message!r}, {len(fds)} fds)")
    requests, stdout, stderr = (socket.socket(fileno=fd) for fd in fds[:3])
    return control, requests, stdout, stderr, fds[3]


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


def main():
    path, kind = sys.argv[1], sys.argv[2]
    control, requests, stdout, stderr, logs_fd = receive_channels(path)
    watch_lifeline(control)
    # From here on, even an ImportError (an image without Airflow) lands in the task log.
    os.dup2(stdout.fileno(), 1)
    os.dup2(stderr.fileno(), 2)
    os.environ.setdefault("_AIRFLOW_PROCESS_CONTEXT", "client")
    from airflow.sdk.execution_time.supervisor import _fork_main

    _fork_main(requests, stdout, stderr, logs_fd, child_target(kind))


if __name__ == "__main__":
    main()
