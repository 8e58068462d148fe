"""``pytest verify`` refuses unusable options in one line, before anything boots."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(str(ROOT / "verify"), *args, timeout=120)


def test_snapshots_and_key_store_are_required(pytester: pytest.Pytester) -> None:
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pytest verify needs --snapshots DIR and --key-store DIR*"])


def test_folder_without_snapshots(pytester: pytest.Pytester, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run(pytester, "--snapshots", str(tmp_path / "empty"), "--key-store", str(tmp_path))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no snapshot in*a snapshot is a folder with a manifest.json*"])


def test_bad_target_version(pytester: pytest.Pytester, tmp_path: Path) -> None:
    result = run(
        pytester,
        "--snapshots",
        str(tmp_path),
        "--key-store",
        str(tmp_path),
        "--n8n-version",
        "latest",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*n8n version 'latest' is not a release version*"])
