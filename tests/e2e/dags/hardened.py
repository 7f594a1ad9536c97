"""What task code can reach from inside its container under the hardened defaults (issue 11).

`probe` runs with the operator's defaults; `probe_bridge` is the control: its sidecar override asks
for `bridge`, which this test deployment's policy allows, so the same connection attempt must succeed
there -- otherwise "cannot reach the host port" would prove nothing."""

from __future__ import annotations

import pendulum

from airflow.sdk import dag, task


def observe(host: str, port: int) -> dict:
    import os
    import socket

    status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
    attempts = {}
    for name, path in (("run_dir", "/run/airflow-docker-runtime/planted"), ("root_fs", "/planted"),
                       ("bootstrap", "/opt/airflow-docker-runtime/planted")):
        try:
            with open(path, "w") as handle:
                handle.write("x")
            attempts[name] = "created"
        except OSError as exc:
            attempts[name] = type(exc).__name__
    try:
        os.mknod("/tmp/planted-device", 0o600 | 0o020000, os.makedev(1, 3))  # a character device: needs CAP_MKNOD
        attempts["device_node"] = "created"
    except OSError as exc:
        attempts["device_node"] = type(exc).__name__
    try:
        socket.create_connection((host, port), timeout=3).close()
        reached = True
    except OSError:
        reached = False
    return {
        "uid": os.getuid(), "gid": os.getgid(), "cap_eff": status["CapEff"].strip(), "cap_prm": status["CapPrm"].strip(),
        "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(), "attempts": attempts,
        "reached_host_port": reached, "tmp_writable": os.access("/tmp", os.W_OK),
    }


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def hardened():
    @task
    def probe(**context) -> dict:
        return observe(context["dag_run"].conf["host"], int(context["dag_run"].conf["port"]))

    @task
    def probe_bridge(**context) -> dict:
        return observe(context["dag_run"].conf["host"], int(context["dag_run"].conf["port"]))

    probe()
    probe_bridge()


hardened()
