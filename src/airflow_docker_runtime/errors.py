"""Errors a caller can catch by meaning: bad runtime configuration versus a container that failed."""

from __future__ import annotations


class DockerRuntimeError(Exception):
    """Base class of every error raised by airflow-docker-runtime."""


class RuntimeSpecError(DockerRuntimeError, ValueError):
    """
    A runtime setting is invalid or forbidden.

    Always names where the bad value came from (a file or an ``airflow.cfg`` section) and the key, so
    the message alone tells a DAG author or an operator what to fix.
    """

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        self.message = message
        super().__init__(f"{source}: key '{key}': {message}")


class PolicyViolation(RuntimeSpecError):
    """A sidecar asked for something the operator's policy does not allow."""


class ContainerError(DockerRuntimeError):
    """A container could not be started or did not run to completion."""


class DaemonUnreachable(ContainerError):
    """The Docker daemon at ``socket_path`` does not answer."""


class ImageNotFound(ContainerError):
    """The image is not on the daemon and the pull policy did not (or could not) bring it."""


class ContainerStartupError(ContainerError):
    """The container started but its bootstrap never connected back (or exited first)."""
