"""``n8n-verify``: the verify suite of the installed package, run from any folder.

``n8n-verify --snapshots DIR --key-store DIR [option...]`` (or ``--repo`` / ``--key-repo``
instead of the folders) is ``pytest verify`` without a
checkout: pytest runs the suite installed with this package, every other option passes through
to it unchanged (``--n8n-version``, ``--runtime``, ``-k``...), and the HTML and JUnit reports go
to ``reports/`` under the current folder. The exit code is pytest's; a missing or unusable
``--snapshots`` or ``--key-store`` is one line on stderr and exit 4 (pytest's usage error).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

import verify
from backup.about import tool_version
from backup.settings import env_name

PROG = "n8n-verify"
FOLDER_OPTIONS = ("--snapshots", "--key-store")
# Instead of the folder, a restic repository the suite fetches from.
REPOSITORY_OPTIONS = {"--snapshots": "--repo", "--key-store": "--key-repo"}
USAGE = (
    f"{PROG} (--snapshots DIR | --repo REPOSITORY) (--key-store DIR | --key-repo REPOSITORY) "
    "[pytest verify options]"
)
HELP_FLAGS = ("-h", "--help")


def suite_folder() -> Path:
    """The installed verify suite: the folder of the ``verify`` package."""
    return Path(verify.__file__).resolve().parent


def input_problem(argv: Sequence[str]) -> str | None:
    """What is wrong with ``--snapshots`` and ``--key-store``, in one line; None when both
    name folders (the suite checks what is inside them)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    for option in (*FOLDER_OPTIONS, *REPOSITORY_OPTIONS.values()):
        parser.add_argument(option)
    try:
        given, _ = parser.parse_known_args(argv)
    except argparse.ArgumentError as exc:
        return f"{exc}; usage: {USAGE}"
    for option in FOLDER_OPTIONS:
        value: str | None = _given(given, option)
        if not value and _given(given, REPOSITORY_OPTIONS[option]):
            continue  # fetched from the repository by the suite
        if not value:
            return f"{option} DIR is required; usage: {USAGE}"
        if not Path(value).is_dir():
            return f"{option} {value} is not a folder"
    return None


def _given(given: argparse.Namespace, option: str) -> str | None:
    """An option's value from the command line, else from its N8N_BACKUP_* variable."""
    value: str | None = getattr(given, option.removeprefix("--").replace("-", "_"))
    return value or os.environ.get(env_name(option.removeprefix("--")))


def pytest_args(argv: Sequence[str], reports_base: Path) -> list[str]:
    """pytest's command line: the installed suite, with ``reports_base`` as pytest's root (the
    plugin writes ``reports/`` there) and no configuration file of whatever project happens to
    surround the installed package or the current folder."""
    return [
        str(suite_folder()),
        "-c",
        os.devnull,
        "--rootdir",
        str(reports_base),
        "-p",
        "no:cacheprovider",
        # This command imported the verify package before pytest could rewrite its asserts;
        # the checks in test_snapshot.py are collected later and rewritten as usual.
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        *argv,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``n8n-verify``: pytest's exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        print(f"{PROG} {tool_version()}")
        return 0
    if not any(arg in HELP_FLAGS for arg in args):
        problem = input_problem(args)
        if problem is not None:
            print(f"{PROG}: error: {problem}", file=sys.stderr)
            return int(pytest.ExitCode.USAGE_ERROR)
    try:
        here = Path.cwd()
    except OSError as exc:  # the current folder was removed
        print(f"{PROG}: error: the current folder is not usable ({exc})", file=sys.stderr)
        return int(pytest.ExitCode.USAGE_ERROR)
    try:
        return int(pytest.main(pytest_args(args, here)))
    except BrokenPipeError:  # output piped into a reader that stopped early (| head)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing more may reach the pipe
        return 1


if __name__ == "__main__":
    sys.exit(main())
