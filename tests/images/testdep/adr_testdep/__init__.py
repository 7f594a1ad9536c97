"""Test-only dependency: lets tests tell which image (dep-v1 / dep-v2) a task ran in."""

from adr_testdep._version import __version__

__all__ = ["__version__", "version"]


def version() -> str:
    """Return the version this package was built at (set by scripts/build-images.sh)."""
    return __version__
