"""Errors a caller can catch by meaning: bad runtime configuration versus a container that failed."""

from __future__ import annotations

from typing import Any

MAX_EXCERPT = 40
"""Longest piece of a bad value (or key) an error message repeats: a hostile file must not fill logs."""


def excerpt(value: Any, limit: int = MAX_EXCERPT) -> str:
    """``repr`` of a string, number or boolean, cut to ``limit`` characters; only the type name of anything else.

    Never calls ``str()`` on a container: a YAML mapping or list may be huge.
    """
    if not isinstance(value, (str, int, float, bool)):
        return f"a {type(value).__name__}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        return "a number too large to show"  # repr() of a 5000-digit int raises
    text = repr(value[: limit + 1]) if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


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
        self.key = key if len(key) <= 2 * MAX_EXCERPT else f"{key[: 2 * MAX_EXCERPT - 3]}..."
        self.message = message
        super().__init__(f"{source}: key '{self.key}': {message}")

    def __reduce__(self):
        # Pickled across processes (a LocalExecutor worker reports a failed workload's exception to the
        # scheduler): rebuild from the three parts, not from the formatted message.
        return type(self), (self.source, self.key, self.message)


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
