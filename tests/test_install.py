"""Installable anywhere: the wheel, pip-installed into a fresh virtual environment outside the
checkout, gives ``n8n-backup``, ``n8n-verify`` and the pytest plugin, usable from any folder.

Nothing of the checkout is on the path there: the environment holds only the wheel and its
dependencies (from the package index pip is configured with; its cache makes a rerun quick).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from backup.n8n import npm
from tests.cli_support import ROOT
from tests.n8n_support import TakenSnapshot, copy_variant
from tests.verify_runner import VERIFY_CHECKS

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


@dataclass(frozen=True)
class Installed:
    """A fresh virtual environment with the project's wheel installed."""

    venv: Path

    def command(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(
        self, *command: str, cwd: Path, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run one of the environment's commands in ``cwd``, with nothing of the checkout on
        the path (the n8n runtime cache is the tests' own, see conftest.py)."""
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        env[npm.CACHE_ENV] = str(npm.cache_root())
        return subprocess.run(
            [self.command(command[0]), *command[1:]],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built once for this module from a clean copy of the source (a
    build/ folder left in the checkout would slip stale modules into the wheel)."""
    out = tmp_path_factory.mktemp("wheel")
    source = tmp_path_factory.mktemp("source") / "project"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "reports", ".demo", "__pycache__", "*.egg-info", ".*cache"
        ),
    )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    [path] = out.glob("n8n_restore_verify-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A fresh virtual environment outside the checkout, with the wheel pip-installed."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr
    return Installed(venv)


def test_commands_come_from_the_installed_package(installed: Installed, tmp_path: Path) -> None:
    version = installed.run("n8n-backup", "--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"n8n-backup {VERSION}"
    where = installed.run("python", "-c", "import verify; print(verify.__file__)", cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(installed.venv), where.stdout
    # Bad input: one line on stderr, pytest's usage-error code, no traceback, nothing written.
    missing = installed.run("n8n-verify", "--snapshots", str(tmp_path), cwd=tmp_path)
    assert missing.returncode == pytest.ExitCode.USAGE_ERROR
    assert missing.stderr.strip().splitlines() == [
        "n8n-verify: error: --key-store DIR is required; usage: n8n-verify (--snapshots DIR | "
        "--repo REPOSITORY) (--key-store DIR | --key-repo REPOSITORY) [pytest verify options]"
    ]
    assert list(tmp_path.iterdir()) == []


def test_plugin_is_inert_for_other_suites(installed: Installed, tmp_path: Path) -> None:
    """Loaded in every pytest run of the environment, the plugin leaves other tests alone,
    also their own ``case`` fixture and parameter, and writes no report."""
    (tmp_path / "test_other.py").write_text(
        "import pytest\n\n\n"
        "@pytest.fixture\ndef case():\n    return 3\n\n\n"
        "@pytest.mark.parametrize('case', [1, 2])\n"
        "def test_param(case):\n    assert case in (1, 2)\n\n\n"
        "def test_fixture(case):\n    assert case == 3\n"
    )
    result = installed.run("pytest", "-p", "no:cacheprovider", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == [
        "test_other.py"
    ]


def test_pytest_pyargs_runs_the_installed_suite(
    installed: Installed, taken: TakenSnapshot, tmp_path: Path
) -> None:
    """``pytest --pyargs verify`` knows the suite's options (the entry point) and runs it from
    any folder; ``-p verify.plugin`` on top is harmless. One check that boots nothing."""
    snapshot = copy_variant(taken, tmp_path / "store", taken.path.name)
    work = tmp_path / "work"
    work.mkdir()
    for plugin in ([], ["-p", "verify.plugin"]):
        result = installed.run(
            "pytest",
            *plugin,
            "--pyargs",
            "verify",
            "--snapshots",
            str(snapshot),
            "--key-store",
            str(taken.key_store),
            "--runtime",
            "process",
            "-k",
            "test_files",
            cwd=work,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 passed" in result.stdout, result.stdout
    assert len(list((work / "reports").glob("verify-*.html"))) >= 1


def test_n8n_verify_checks_a_real_snapshot_from_any_folder(
    installed: Installed, taken: TakenSnapshot, launcher: Path, tmp_path: Path
) -> None:
    snapshot = copy_variant(taken, tmp_path / "store", taken.path.name)
    work = tmp_path / "work"
    work.mkdir()
    result = installed.run(
        "n8n-verify",
        "--snapshots",
        str(snapshot),
        "--key-store",
        str(taken.key_store),
        "--runtime",
        "process",
        cwd=work,
        timeout=900,
    )
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    summary = [line for line in result.stdout.splitlines() if re.match(r"=+ .* in \S+s", line)]
    assert summary, said
    assert re.fullmatch(
        rf"=+ {VERIFY_CHECKS} passed(, 1 deselected)?(, \d+ warnings?)? in \S+ =+", summary[-1]
    )
    assert f"n8n-restore-verify {VERSION}" in said  # the installed plugin's report header
    assert f"rootdir: {work}" in said
    [report] = (work / "reports").glob("verify-*.html")
    assert report.with_suffix(".xml").is_file()
    assert "n8n restore verification" in report.read_text(encoding="utf-8")


def test_without_extras_postgres_and_docker_commands_name_the_extra(
    installed: Installed, taken: TakenSnapshot, tmp_path: Path
) -> None:
    """The plain install has neither psycopg nor docker: SQLite and the process runtime work
    (the tests above), and a command that needs an extra says which, in one line."""
    absent = installed.run("python", "-c", "import psycopg", cwd=tmp_path)
    assert absent.returncode != 0, "the plain install must not bring the postgres extra"
    for args, extra in (
        (["restore", str(tmp_path), "--container", "n8n"], "docker"),
        (["list", "--container", "n8n"], "docker"),
        (["list", "--snapshots", str(tmp_path), "--json"], None),
        (
            [
                "snapshot",
                "--postgres",
                "postgresql://n8n@127.0.0.1:1/n8n",
                "--api-url",
                "http://127.0.0.1:1",
                "--snapshots",
                str(tmp_path / "s"),
                "--key-store",
                str(tmp_path / "k"),
            ],
            "postgres",
        ),
    ):
        result = installed.run("n8n-backup", *args, cwd=tmp_path)
        if extra is None:
            assert result.returncode == 0, result.stderr
            continue
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert f"needs the '{extra}' extra" in lines[0]
        assert f"pip install 'n8n-restore-verify[{extra}]'" in lines[0]
    snapshot = ("--snapshots", str(taken.path), "--key-store", str(taken.key_store))
    docker = installed.run("n8n-verify", *snapshot, "--runtime", "docker", cwd=tmp_path)
    assert docker.returncode == pytest.ExitCode.USAGE_ERROR
    assert "needs the 'docker' extra" in docker.stderr
