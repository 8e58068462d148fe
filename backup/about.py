"""The tool's own version, as installed (pyproject.toml is the one place it is written)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "n8n-restore-verify"


def tool_version() -> str:
    """The installed version of n8n-restore-verify, or "unknown" when run from an uninstalled
    copy of the source."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"
