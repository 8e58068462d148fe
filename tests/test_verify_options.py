"""``pytest verify`` refuses unusable options in one line, before anything boots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backup.manifest import Counts, Manifest
from tests.cli_support import ROOT
from tests.n8n_support import TakenSnapshot
from tests.verify_runner import wrong_key_store
from verify.cases import SnapshotCase


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(str(ROOT / "verify"), *args, timeout=120)


def test_snapshots_and_key_store_are_required(pytester: pytest.Pytester) -> None:
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*pytest verify needs --snapshots DIR (or --repo REPOSITORY) and --key-store DIR*"]
    )


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


@pytest.mark.parametrize(
    ("dsn", "said"),
    [
        ("postgresql://n8n@db1:5432,db2:5433/n8n", "names db1,db2 port 5432,5433: give one host"),
        ("postgresql://n8n@db:99999/n8n", "names db port 99999: give one host and one port"),
        ("postgresql://n8n@db:5432", "names no database"),
        ("postgresql://n8n@db:5432/n8n?sslmode", "is not a PostgreSQL connection string"),
    ],
)
def test_an_unusable_postgres_server_is_one_line(
    pytester: pytest.Pytester, tmp_path: Path, dsn: str, said: str
) -> None:
    """Refused before the run starts, whatever the snapshots are (nothing is asked of it)."""
    result = run(
        pytester, "--snapshots", str(tmp_path), "--key-store", str(tmp_path), "--postgres", dsn
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --postgres {said}*"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


@pytest.mark.parametrize(
    ("server_version", "expected"),
    [("15.10", "postgres:15"), ("16.4", "postgres:16"), (None, "postgres:18")],
)
def test_postgres_image_follows_the_source_major(
    tmp_path: Path, server_version: str | None, expected: str
) -> None:
    manifest = Manifest(
        snapshot_id="s",
        created="2026-11-26T00:00:00+00:00",
        source_n8n_version="2.40.7",
        database_kind="postgres",
        database_file="database.dump",
        key_fingerprint="0" * 32,
        counts=Counts(0, 0, 0),
        workflows=[],
        credentials=[],
        database_schema="public",
        database_server_version=server_version,
    )
    template = SnapshotCase(tmp_path, tmp_path, None, 1.0, 1.0, postgres_image="postgres:{major}")
    assert template.postgres_image_for(manifest) == expected
    fixed = SnapshotCase(tmp_path, tmp_path, None, 1.0, 1.0, postgres_image="pg:local")
    assert fixed.postgres_image_for(manifest) == "pg:local"


def test_runtime_auto_takes_docker_only_with_the_images_here(
    pytester: pytest.Pytester, taken: TakenSnapshot, n8n_image: str
) -> None:
    """With an engine up, auto boots on Docker only when the engine has the image; otherwise
    (no registry here, every pull would fail) the process runtime, saying why."""
    snapshot = ("--snapshots", str(taken.path), "--key-store", str(taken.key_store))
    template = n8n_image.rsplit(":", 1)[0] + ":{version}"
    present = run(pytester, *snapshot, "--runtime", "auto", "--n8n-image", template, "--co")
    present.stdout.fnmatch_lines(["runtime: docker (auto: the engine has every image needed)"])
    absent = "n8n-restore-verify/not-built:{version}"
    missing = run(pytester, *snapshot, "--runtime", "auto", "--n8n-image", absent, "--co")
    missing.stdout.fnmatch_lines(
        ["runtime: process (auto: the Docker engine has no image n8n-restore-verify/not-built:*"]
    )


def test_verify_settings_come_from_the_environment_and_the_settings_file(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The suite's options by n8n-backup's names: N8N_BACKUP_<NAME>, then [verify] of the
    settings file; the command line wins over both."""
    (tmp_path / "from-env").mkdir()
    monkeypatch.setenv("N8N_BACKUP_SNAPSHOTS", str(tmp_path / "from-env"))
    monkeypatch.setenv("N8N_BACKUP_KEY_STORE", str(tmp_path))
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*no snapshot in {tmp_path / 'from-env'}*"])
    (tmp_path / "from-cli").mkdir()
    result = run(pytester, "--snapshots", str(tmp_path / "from-cli"))
    result.stderr.fnmatch_lines([f"*no snapshot in {tmp_path / 'from-cli'}*"])
    settings = tmp_path / "n8n-backup.toml"
    settings.write_text('[verify]\nruntime = "sideways"\n')
    monkeypatch.setenv("N8N_BACKUP_CONFIG", str(settings))
    result = run(pytester)
    result.stderr.fnmatch_lines(["*runtime in * must be one of auto, docker, process*"])


def test_a_verify_run_leaves_the_test_tools_plugins_out(
    pytester: pytest.Pytester, taken: TakenSnapshot, tmp_path: Path
) -> None:
    """hypothesis's pytest plugin (installed with the project's test tools) imported hypothesis
    at the end of every verify run: 1.1-1.5 s of a 10 s verify. A verify run unregisters it;
    any other run keeps it."""
    pytester.makepyfile(
        probe="""
        import sys
        def pytest_unconfigure(config):
            plugin = config.pluginmanager.has_plugin("hypothesispytest")
            print(f"PROBE plugin={plugin} imported={'hypothesis' in sys.modules}")
        """
    )
    reports = ("--html", str(tmp_path / "r.html"), "--junitxml", str(tmp_path / "r.xml"))
    snapshots = ("--snapshots", str(taken.path), "--key-store", str(taken.key_store))
    result = run(pytester, "-p", "probe", "--collect-only", *snapshots, *reports)
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    result.stdout.fnmatch_lines(["PROBE plugin=False imported=False"])
    pytester.makepyfile(test_other="def test_nothing_to_see():\n    assert True\n")
    other = pytester.runpytest_subprocess("-p", "probe", "test_other.py", timeout=120)
    assert other.ret == pytest.ExitCode.OK
    other.stdout.fnmatch_lines(["PROBE plugin=True imported=True"])
    # A run of both (the project's tests and verify) keeps it for the tests that use it.
    both = run(pytester, "-p", "probe", "--collect-only", *snapshots, *reports, "test_other.py")
    assert both.ret == pytest.ExitCode.OK, both.stderr.str()
    both.stdout.fnmatch_lines(["PROBE plugin=True imported=True"])


def test_a_verify_run_never_overwrites_another_runs_reports(
    pytester: pytest.Pytester, taken: TakenSnapshot, tmp_path: Path
) -> None:
    """Reports were named after the second the run started: two runs started in the same second
    (a nightly job verifying two instances at once) wrote the same files, and one run's
    report replaced the other's. Here other runs' reports exist for every second this run can
    start in: it picks its own names beside them and changes none of them."""
    reports = pytester.path / "reports"
    reports.mkdir(mode=0o700)
    now = datetime.now(UTC)
    others = {
        reports / f"verify-{(now + timedelta(seconds=s)).strftime('%Y%m%dT%H%M%SZ')}.{ext}"
        for s in range(-1, 120)
        for ext in ("html", "xml", "json")
    }
    for path in others:
        path.write_text("another run's report")
    wrong = wrong_key_store(tmp_path / "wrong-keys", taken.path, "0" * 32)
    snapshots = ("--snapshots", str(taken.path), "--key-store", str(wrong))
    result = run(pytester, "--rootdir", str(pytester.path), *snapshots)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stderr.str()
    (html,) = set(reports.glob("*.html")) - others
    assert html.name.endswith("-2.html"), html.name
    assert {p.name for p in set(reports.iterdir()) - others} == {
        html.name,
        html.with_suffix(".xml").name,
        html.with_suffix(".json").name,
    }
    assert taken.path.name in html.read_text(encoding="utf-8")
    assert all(path.read_text() == "another run's report" for path in others)
