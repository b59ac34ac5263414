"""ferry: live-migrate workloads between Docker hosts with CRIU, driven by Kubernetes."""

from importlib.metadata import PackageNotFoundError, version

UNKNOWN_VERSION = "0.0.0+unknown"


def installed_version(distribution: str = "ferry") -> str:
    """The installed distribution's version; UNKNOWN_VERSION when it is not installed (run from a tree)."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return UNKNOWN_VERSION


__version__ = installed_version()
