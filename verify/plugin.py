"""pytest plugin behind ``pytest verify``: options, one test group per snapshot, reports.

Registered from the top-level conftest.py. It only acts when the verify suite is collected, so
the project's own tests run without reports or snapshot options.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backup.about import tool_version
from backup.errors import BackupError, InputError
from backup.instances.docker import (
    OFFICIAL_IMAGE,
    OFFICIAL_POSTGRES_IMAGE,
    disable_ryuk_without_registry,
    engine_answers,
)
from backup.manifest import find_snapshots
from backup.runtime import validate_version
from backup.verification_record import TargetResult, VerificationRecord, write_record
from verify.cases import CASES_KEY, SUMMARIES_KEY, SnapshotCase
from verify.report import SnapshotSummary, summary_table

VERIFY_DIR = Path(__file__).resolve().parent
DEFAULT_BOOT_TIMEOUT = 180.0
DEFAULT_QUIET_SECONDS = 10.0
REPORTS_DIR = "reports"

SNAPSHOTS_HELP = "folder of snapshots (or one snapshot folder) to verify"
KEY_STORE_HELP = "key store folder written by n8n-backup snapshot --key-store"
VERSION_HELP = (
    "n8n version(s) to restore onto, comma-separated or repeated; each snapshot and version "
    "pair is its own group of tests (default: each snapshot's source version)"
)
BOOT_TIMEOUT_HELP = f"seconds to wait for n8n to be ready (default {DEFAULT_BOOT_TIMEOUT:.0f})"
QUIET_HELP = (
    "seconds a restored instance must stay silent (no execution) before 'nothing fires' "
    f"passes (default {DEFAULT_QUIET_SECONDS:.0f})"
)

RUNTIMES = ("auto", "docker", "process")
RUNTIME_HELP = (
    "where fresh n8n instances run: docker (testcontainers), process (local n8n from npm), "
    "or auto (docker when an engine answers, else process; default)"
)
POSTGRES_HELP = (
    "PostgreSQL server (libpq URI, password in PGPASSWORD) where verify restores PostgreSQL "
    "snapshots into throwaway databases"
)
POSTGRES_IMAGE_HELP = (
    "PostgreSQL image for PostgreSQL snapshots on the docker runtime; {major} is the source "
    f"server's major version ({OFFICIAL_POSTGRES_IMAGE})"
)
IMAGE_HELP = f"image for the docker runtime; {{version}} is the target version ({OFFICIAL_IMAGE})"

pytest_plugins = ["verify.fixtures"]


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``n8n-verify`` option group."""
    group = parser.getgroup("n8n-verify", "restore n8n snapshots into a fresh n8n and check them")
    group.addoption("--snapshots", type=Path, help=SNAPSHOTS_HELP)
    group.addoption("--key-store", type=Path, help=KEY_STORE_HELP)
    group.addoption("--n8n-version", action="append", default=[], help=VERSION_HELP)
    group.addoption(
        "--boot-timeout", type=float, default=DEFAULT_BOOT_TIMEOUT, help=BOOT_TIMEOUT_HELP
    )
    group.addoption("--runtime", choices=RUNTIMES, default="auto", help=RUNTIME_HELP)
    group.addoption("--n8n-image", default=OFFICIAL_IMAGE, help=IMAGE_HELP)
    group.addoption("--postgres-dsn", help=POSTGRES_HELP)
    group.addoption("--postgres-image", default=OFFICIAL_POSTGRES_IMAGE, help=POSTGRES_IMAGE_HELP)
    group.addoption("--quiet-seconds", type=float, default=DEFAULT_QUIET_SECONDS, help=QUIET_HELP)


def _runs_verify_suite(config: pytest.Config) -> bool:
    for arg in config.args:
        path = Path(arg.split("::")[0])
        path = path if path.is_absolute() else Path(config.invocation_params.dir) / path
        try:
            path.resolve().relative_to(VERIFY_DIR)
        except ValueError:
            continue
        return True
    return False


def _load_cases(config: pytest.Config) -> list[SnapshotCase]:
    snapshots: Path | None = config.getoption("snapshots")
    key_store: Path | None = config.getoption("key_store")
    if snapshots is None or key_store is None:
        raise pytest.UsageError(
            "pytest verify needs --snapshots DIR and --key-store DIR (see README)"
        )
    if not snapshots.is_dir():
        raise pytest.UsageError(f"--snapshots {snapshots} is not a folder")
    targets: list[str | None] = [
        version.strip()
        for option in config.getoption("n8n_version")
        for version in option.split(",")
        if version.strip()
    ] or [None]
    try:
        for target in targets:
            if target:
                validate_version(target)
    except InputError as exc:
        raise pytest.UsageError(str(exc)) from None
    runtime_name: str = config.getoption("runtime")
    if runtime_name == "auto":
        runtime_name = "docker" if engine_answers() else "process"
    elif runtime_name == "docker" and not engine_answers():
        raise pytest.UsageError(
            "--runtime docker: no Docker engine answers; start dockerd or use --runtime process"
        )
    if runtime_name == "docker":
        disable_ryuk_without_registry()
    folders = find_snapshots(snapshots)
    if not folders:
        raise pytest.UsageError(
            f"no snapshot in {snapshots}: a snapshot is a folder with a manifest.json "
            "(made by n8n-backup snapshot)"
        )
    return [
        SnapshotCase(
            folder=folder,
            key_store=key_store,
            requested_version=target,
            boot_timeout=config.getoption("boot_timeout"),
            quiet_seconds=config.getoption("quiet_seconds"),
            runtime=runtime_name,
            image_template=config.getoption("n8n_image"),
            postgres_dsn=config.getoption("postgres_dsn"),
            postgres_image=config.getoption("postgres_image"),
        )
        for folder in folders
        for target in dict.fromkeys(targets)  # each pair once, in the order given
    ]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Load the snapshots and, unless told otherwise, point the HTML and JUnit reports."""
    if not _runs_verify_suite(config) or hasattr(config, "workerinput"):
        return
    try:
        cases = _load_cases(config)
    except BackupError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[CASES_KEY] = cases
    config.stash[SUMMARIES_KEY] = {case.case_id: SnapshotSummary(case.case_id) for case in cases}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    # Reports name workflows, credentials and keys' fingerprints: private to the user (0600),
    # like everything else this run writes.
    os.umask(0o077)
    reports = Path(config.rootpath) / REPORTS_DIR
    reports.mkdir(mode=0o700, exist_ok=True)
    reports.chmod(0o700)
    if not config.option.htmlpath:
        config.option.htmlpath = str(reports / f"verify-{stamp}.html")
    config.option.self_contained_html = True
    if not config.option.xmlpath:
        config.option.xmlpath = str(reports / f"verify-{stamp}.xml")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One group of tests per snapshot, with the snapshot's id as the test id."""
    if "case" in metafunc.fixturenames:
        cases = metafunc.config.stash.get(CASES_KEY, [])
        metafunc.parametrize(
            "case", cases, ids=[case.case_id for case in cases], scope="session", indirect=True
        )


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say what is being verified, at the top of the run."""
    cases = config.stash.get(CASES_KEY, None)
    if cases is None:
        return []
    return [
        f"n8n-restore-verify {tool_version()}",
        f"n8n snapshots: {len(cases)} under {config.getoption('snapshots')}",
        f"runtime: {cases[0].runtime if cases else '-'}",
        f"key store: {config.getoption('key_store')}; report: {config.option.htmlpath}",
    ]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Count outcomes per snapshot and attach n8n's log to a failing test."""
    report = yield
    callspec = getattr(item, "callspec", None)
    case: SnapshotCase | None = callspec.params.get("case") if callspec else None
    if case is None:
        return report
    summary = item.config.stash[SUMMARIES_KEY][case.case_id]
    summary.test_seconds += report.duration
    name = item.originalname if isinstance(item, pytest.Function) else item.name
    if not summary.required:
        summary.required = suite_checks(item)
    if report.failed:
        summary.failed.append(name)
        log = case.instance_log()
        if log:
            from pytest_html import extras

            previous = getattr(report, "extras", [])
            report.extras = [*previous, extras.text(log, name="n8n log")]  # type: ignore[attr-defined]
    elif report.when == "call" and report.passed:
        summary.passed.add(name)
    return report


def suite_checks(item: pytest.Item) -> frozenset[str]:
    """Every check the verify suite has, whatever was selected: a snapshot counts as verified
    only when all of them passed on a target."""
    module = getattr(item, "module", None)
    return frozenset(
        name for name, value in vars(module).items() if name.startswith("test_") and callable(value)
    )


def pytest_html_results_summary(
    prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
) -> None:
    """Open the report with one row per snapshot."""
    summaries = session.config.stash.get(SUMMARIES_KEY, None)
    if summaries:
        prefix.append(summary_table(list(summaries.values())))


def pytest_html_report_title(report: Any) -> None:
    """A title that says what the report is about."""
    report.title = f"n8n restore verification (n8n-restore-verify {tool_version()})"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Record each verified snapshot's result beside it, for ``n8n-backup list`` and ``prune``."""
    cases: list[SnapshotCase] | None = session.config.stash.get(CASES_KEY, None)
    if not cases:
        return
    summaries = session.config.stash[SUMMARIES_KEY]
    verified_at = datetime.now(UTC).isoformat(timespec="seconds")
    by_folder: dict[Path, list[TargetResult]] = {}
    snapshot_ids: dict[Path, str] = {}
    for case in cases:
        summary = summaries[case.case_id]
        if summary.result == "NOT RUN":
            continue
        snapshot_ids[case.folder] = summary.snapshot_id
        by_folder.setdefault(case.folder, []).append(
            TargetResult(
                summary.target_version,
                summary.runtime,
                summary.result,
                summary.failed,
                summary.upgrade_changes or {},
            )
        )
    report = str(session.config.option.htmlpath)
    for folder, targets in by_folder.items():
        record = VerificationRecord(snapshot_ids[folder], verified_at, report, targets)
        try:
            write_record(folder, record)
        except OSError as exc:  # a read-only backup store must not fail the verification
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"n8n-verify: cannot record the result beside {folder}: {exc}")
