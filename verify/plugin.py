"""pytest plugin behind ``pytest verify``: options, one test group per snapshot, reports.

Registered by the ``pytest11`` entry point wherever the package is installed (also ``-p
verify.plugin``). It only acts when the verify suite is collected, by path or with ``--pyargs
verify``, from the checkout or the installed package: other tests run without reports, and their
own ``case`` fixtures and parameters are left alone.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import socket
import sys
from collections.abc import Callable, Generator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from backup.abandoned import remove_abandoned
from backup.about import tool_version
from backup.atomic import reserve_new_file
from backup.errors import BackupError, InputError
from backup.extras import MissingExtraError
from backup.interrupts import interrupts_as_keyboard_interrupt, interrupts_ignored
from backup.manifest import Manifest, find_snapshots
from backup.metrics import write_metrics, write_repository_metrics
from backup.n8n.instances.base import OFFICIAL_IMAGE, OFFICIAL_POSTGRES_IMAGE
from backup.n8n.npm import validate_version
from backup.notify import NOTIFY_ON, ON_FAILURE, check_url, notify, ping_start
from backup.repository.restic import Password, ResticRepository
from backup.repository.snapshots import stored_snapshots
from backup.settings import env_name, masked, read_config
from backup.verification_record import TargetResult, VerificationRecord, write_record
from verify.cases import (
    CASES_KEY,
    FILES_KEY,
    INTERRUPTS_KEY,
    NEXT_FOLDER_KEY,
    REMOTE_KEY,
    RUNTIME_NOTE_KEY,
    STARTED_KEY,
    SUMMARIES_KEY,
    SnapshotCase,
)
from verify.parallel import (
    available_memory,
    interrupt_workers,
    parallel_workers,
    parse_shard,
    shard_groups,
    snapshot_scheduler,
)
from verify.remote import RemoteSnapshots, SnapshotFiles, fetch_remote, repository_option
from verify.report import (
    PRINT_CSS,
    SnapshotSummary,
    checks_table,
    plain_check_name,
    run_facts,
    summary_table,
)
from verify.result import run_outcome, write_result

if TYPE_CHECKING:
    from backup.n8n.postgres import PostgresTarget

VERIFY_DIR = Path(__file__).resolve().parent
DEFAULT_BOOT_TIMEOUT = 180.0
DEFAULT_QUIET_SECONDS = 10.0
REPORTS_DIR = "reports"
# Plugins of the project's own test tools that a verify run has no use for: hypothesis's imports
# hypothesis at the end of every run (1.1-1.5 s measured on a 10 s verify).
UNUSED_PLUGINS = ("hypothesispytest",)

SNAPSHOTS_HELP = "folder of snapshots (or one snapshot folder) to verify"
KEY_STORE_HELP = "key store folder written by n8n-backup snapshot --key-store"
VERSION_HELP = (
    "n8n version(s) to restore onto, comma-separated or repeated; each snapshot and version "
    "pair is its own group of tests (default: each snapshot's source version)"
)
BOOT_TIMEOUT_HELP = f"seconds to wait for n8n to be ready (default {DEFAULT_BOOT_TIMEOUT:.0f})"
QUIET_HELP = (
    "seconds a restored instance must stay silent (no execution, nothing active), counted "
    "from n8n's start and overlapping the other checks, before 'nothing fires' passes "
    f"(default {DEFAULT_QUIET_SECONDS:.0f})"
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
TEST_CREDENTIALS_HELP = (
    "also run n8n's own test of each credential (the editor's Test button): the restored n8n "
    "then reaches the services the credentials point at, and only those"
)
METRICS_HELP = (
    "after the run, write the snapshots' metrics there (Prometheus text format, for "
    "node_exporter's textfile collector)"
)
NOTIFY_HELP = (
    "post the run's result there (repeatable): a JSON webhook, slack+https://... or "
    "ping+https://... (healthchecks.io-style: start, success, fail)"
)
NOTIFY_ON_HELP = "failure (default): webhooks hear of failed runs only; always: of every run"
REPO_HELP = (
    "verify snapshots straight from this restic repository (fetched into a private folder, "
    "removed afterwards; each result tagged there as verified:V or failed:V)"
)
KEY_REPO_HELP = "read the keys from this restic repository (the key store's second copy)"
PASSWORD_HELP = "its restic password's file or command (--repo: default RESTIC_PASSWORD_FILE)"
OPTION_HELP = "restic extended option for it (repeatable), e.g. sftp.command=..."
REPO_SNAPSHOTS_HELP = (
    "with --repo: latest (newest of each instance; default), all, or snapshot ids "
    "(repeatable, or comma-separated)"
)
SHARD_HELP = (
    "verify only this machine's share of the snapshot-and-target groups, e.g. 2/4 in a CI "
    "matrix of 4 (every 4th group in name order); n8n-verify-merge joins the shards' results"
)
CAUSE_LIMIT = 400
WORKER_INPUT = "n8n_verify"  # what a pytest-xdist worker gets from the controller
# Checks that run only when asked for; a run without them still counts as verified.
OPT_IN_CHECKS = frozenset({"test_credentials_connect"})
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def flag(text: str) -> bool:
    """A yes/no setting (true/false, 1/0, yes/no, on/off); ValueError otherwise."""
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise ValueError(text)


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
    group.addoption("--postgres", dest="postgres_dsn", help=POSTGRES_HELP)
    group.addoption("--postgres-dsn", dest="postgres_dsn", help=argparse.SUPPRESS)  # old name
    group.addoption("--postgres-image", default=OFFICIAL_POSTGRES_IMAGE, help=POSTGRES_IMAGE_HELP)
    group.addoption("--quiet-seconds", type=float, default=DEFAULT_QUIET_SECONDS, help=QUIET_HELP)
    group.addoption("--test-credentials", action="store_true", help=TEST_CREDENTIALS_HELP)
    group.addoption("--metrics-file", type=Path, help=METRICS_HELP)
    group.addoption("--notify", action="append", default=[], metavar="URL", help=NOTIFY_HELP)
    group.addoption("--notify-on", choices=NOTIFY_ON, default=ON_FAILURE, help=NOTIFY_ON_HELP)
    for name, what in (("repo", REPO_HELP), ("key-repo", KEY_REPO_HELP)):
        group.addoption(f"--{name}", metavar="REPOSITORY", help=what)
        group.addoption(f"--{name}-password-file", type=Path, metavar="FILE", help=PASSWORD_HELP)
        group.addoption(f"--{name}-password-command", metavar="CMD", help=PASSWORD_HELP)
        group.addoption(
            f"--{name}-option", action="append", default=[], metavar="KEY=VALUE", help=OPTION_HELP
        )
    group.addoption(
        "--repo-snapshots", action="append", default=[], metavar="WHICH", help=REPO_SNAPSHOTS_HELP
    )
    group.addoption("--shard", metavar="K/N", help=SHARD_HELP)


def _module_path(name: str) -> Path | None:
    """The file or folder a ``--pyargs`` module name stands for, when it names a module."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.origin is not None and spec.has_location:
        return Path(spec.origin)
    locations = list(spec.submodule_search_locations or [])
    return Path(locations[0]) if locations else None


def _in_suite(path: Path) -> bool:
    try:
        path.resolve().relative_to(VERIFY_DIR)
    except ValueError:
        return False
    return True


def _args_in_suite(config: pytest.Config) -> list[bool]:
    """For each path the command line collects, whether it is inside the verify suite (with
    ``--pyargs``, a module name: as pytest does, a name that imports wins over a path)."""
    inside = []
    for arg in config.args:
        name = arg.split("::")[0]
        path = _module_path(name) if config.option.pyargs else None
        if path is None:
            path = Path(name)
            path = path if path.is_absolute() else Path(config.invocation_params.dir) / path
        inside.append(_in_suite(path))
    return inside


def _runs_verify_suite(config: pytest.Config) -> bool:
    """Whether the command line collects the verify suite."""
    return any(_args_in_suite(config))


def _snapshots_repository(config: pytest.Config) -> ResticRepository | None:
    """The repository --repo names, if any."""
    return repository_option(
        config.getoption("repo"),
        config.getoption("repo_password_file"),
        config.getoption("repo_password_command"),
        config.getoption("repo_option"),
        what="--repo",
        environ_default=Password.from_environ(os.environ),
    )


def _fetch_remote(config: pytest.Config) -> RemoteSnapshots | None:
    """With --repo: the selected snapshots' manifests (and, with --key-repo, the keys)
    fetched; their files come group by group (config.stash[FILES_KEY])."""
    repo = _snapshots_repository(config)
    key_repo = repository_option(
        config.getoption("key_repo"),
        config.getoption("key_repo_password_file"),
        config.getoption("key_repo_password_command"),
        config.getoption("key_repo_option"),
        what="--key-repo",
    )
    if repo is None:
        if key_repo is not None:
            raise InputError("--key-repo goes with --repo (local snapshots use --key-store)")
        return None
    if config.getoption("snapshots") is not None:
        raise InputError("give --snapshots DIR or --repo REPOSITORY, not both")
    wanted = [w.strip() for o in config.getoption("repo_snapshots") for w in o.split(",")]
    remote = fetch_remote(repo, [w for w in wanted if w], key_repo)
    config.stash[REMOTE_KEY] = remote
    config.stash[FILES_KEY] = remote.files()
    config.option.snapshots = remote.folder / "snapshots"
    if remote.key_store is not None and config.getoption("key_store") is None:
        config.option.key_store = remote.key_store
    return remote


def _load_cases(config: pytest.Config) -> list[SnapshotCase]:
    remote = _fetch_remote(config)
    if remote is not None and not remote.fetched:
        raise pytest.UsageError(f"no n8n snapshot in the restic repository {remote.repo.shown}")
    snapshots: Path | None = config.getoption("snapshots")
    key_store: Path | None = config.getoption("key_store")
    if snapshots is None or key_store is None:
        raise pytest.UsageError(
            "pytest verify needs --snapshots DIR (or --repo REPOSITORY) and --key-store DIR "
            "(or --key-repo REPOSITORY) (see README)"
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
    folders = find_snapshots(snapshots)
    if not folders:
        raise pytest.UsageError(
            f"no snapshot in {snapshots}: a snapshot is a folder with a manifest.json "
            "(made by n8n-backup snapshot)"
        )
    cases = [
        SnapshotCase(
            folder=folder,
            key_store=key_store,
            requested_version=target,
            boot_timeout=config.getoption("boot_timeout"),
            quiet_seconds=config.getoption("quiet_seconds"),
            image_template=config.getoption("n8n_image"),
            postgres_dsn=config.getoption("postgres_dsn"),
            postgres_image=config.getoption("postgres_image"),
            test_credentials=bool(config.getoption("test_credentials")),
        )
        for folder in folders
        for target in dict.fromkeys(targets)  # each pair once, in the order given
    ]
    shard = config.getoption("shard")
    if shard:
        try:
            index, count = parse_shard(shard)
        except ValueError:
            raise InputError(f"--shard {shard} is not K/N with 1 <= K <= N (e.g. 1/2)") from None
        mine = shard_groups([case.case_id for case in cases], index, count)
        cases = [case for case in cases if case.case_id in mine]
        if not cases:
            raise InputError(f"shard {index}/{count} has no snapshot to verify: use fewer shards")
    runtime_name, note = choose_runtime(config.getoption("runtime"), cases)
    if runtime_name == "docker":
        from backup.n8n.instances.docker import disable_ryuk_without_registry

        disable_ryuk_without_registry()
    for case in cases:
        case.runtime = runtime_name
    config.stash[RUNTIME_NOTE_KEY] = note
    return cases


def choose_runtime(asked: str, cases: list[SnapshotCase]) -> tuple[str, str]:
    """The runtime to boot on and a note saying why. ``auto`` takes Docker only when an engine
    answers and has every image the snapshots need (no registry is asked: without one, every
    boot would fail); else the process runtime, and the note names the missing image."""
    if asked == "process":
        return "process", "process (--runtime process)"
    try:
        from backup.n8n.instances.docker import engine_problem, missing_images
    except MissingExtraError as exc:
        if asked == "docker":
            raise pytest.UsageError(f"--runtime docker: {exc}") from None
        return "process", "process (auto: the 'docker' extra is not installed)"
    problem = engine_problem()
    if problem is not None:
        if asked == "docker":
            from backup.n8n.docker_engine import remote_engine

            remote = remote_engine()
            raise pytest.UsageError(
                f"--runtime docker: the Docker engine at DOCKER_HOST={remote} does not answer "
                f"({problem}): check that `docker -H {remote} version` works, or use "
                "--runtime process"
                if remote
                else f"--runtime docker: no Docker engine answers ({problem}); start dockerd "
                "or use --runtime process"
            )
        return "process", "process (auto: no Docker engine answers)"
    if asked == "docker":
        return "docker", "docker (--runtime docker; missing images are pulled)"
    missing = missing_images(_images_needed(cases))
    if missing:
        return "process", (
            f"process (auto: the Docker engine has no image {missing[0]}; pull it, or pass "
            "--runtime docker to have it pulled)"
        )
    return "docker", "docker (auto: the engine has every image needed)"


def _images_needed(cases: list[SnapshotCase]) -> list[str]:
    """The n8n (and PostgreSQL) images the docker runtime would boot; a snapshot whose
    manifest does not load is left to its checks."""
    images = []
    for case in cases:
        try:
            manifest = Manifest.load(case.folder)
            images.append(case.image(case.target_version(manifest)))
        except BackupError:
            continue
        if manifest.database_kind == "postgres":
            images.append(case.postgres_image_for(manifest))
    return images


def _reports_base(config: pytest.Config) -> Path:
    """Where ``reports/`` goes: pytest's root when it was given (``--rootdir``) or found with a
    configuration file (the checkout), else the folder pytest was started from, rather than the
    folder pytest guesses from the paths on the command line (the installed package's, the
    snapshots')."""
    if config.inipath is None and not config.option.rootdir:
        return Path(config.invocation_params.dir)
    return Path(config.rootpath)


# The suite's settings as n8n-backup names them (backup.settings): from the command line, else
# N8N_BACKUP_<NAME>, else the settings file ([verify] table or top level), else the default.
VERIFY_SETTINGS: dict[str, tuple[str, Callable[[str], object]]] = {
    "snapshots": ("snapshots", Path),
    "key-store": ("key_store", Path),
    "n8n-version": ("n8n_version", str),
    "boot-timeout": ("boot_timeout", float),
    "runtime": ("runtime", str),
    "n8n-image": ("n8n_image", str),
    "postgres": ("postgres_dsn", str),
    "postgres-image": ("postgres_image", str),
    "quiet-seconds": ("quiet_seconds", float),
    "test-credentials": ("test_credentials", flag),
    "metrics-file": ("metrics_file", Path),
    "notify": ("notify", str),
    "notify-on": ("notify_on", str),
    "repo": ("repo", str),
    "repo-password-file": ("repo_password_file", Path),
    "repo-password-command": ("repo_password_command", str),
    "key-repo": ("key_repo", str),
    "key-repo-password-file": ("key_repo_password_file", Path),
    "key-repo-password-command": ("key_repo_password_command", str),
    "shard": ("shard", str),
}


def apply_verify_settings(config: pytest.Config, environ: Mapping[str, str]) -> None:
    """Fill the suite's options that the command line did not give."""
    file_settings, path = read_config(None, environ)
    table = file_settings.get("verify", {})
    if not isinstance(table, dict):
        raise InputError(f"[verify] in {path} must be a table of settings")
    unknown = sorted(set(table) - set(VERIFY_SETTINGS))
    if unknown:
        raise InputError(f"unknown setting {unknown[0]!r} in [verify] of {path}")
    given = [str(arg).split("=")[0] for arg in config.invocation_params.args]
    aliases = {"postgres": ("--postgres", "--postgres-dsn")}
    for name, (dest, convert) in VERIFY_SETTINGS.items():
        if any(option in given for option in aliases.get(name, (f"--{name}",))):
            continue
        # n8n-backup's "postgres" is n8n's own database; verify's is a scratch server where it
        # creates and drops databases: never taken from a shared setting.
        variable = env_name("verify-postgres" if name == "postgres" else name)
        shared = name != "postgres" and name in file_settings
        if variable in environ:
            raw: object = environ[variable]
            where = variable
        elif name in table or (shared and not isinstance(file_settings[name], dict)):
            raw = table.get(name, file_settings.get(name))
            where = f"{path}"
        else:
            continue
        if isinstance(raw, dict) or (isinstance(raw, bool) and convert is not flag):
            raise InputError(f"{name} in {where} must be a single value or a list of versions")
        try:
            if dest == "n8n_version":
                value: object = [str(v) for v in raw] if isinstance(raw, list) else [str(raw)]
            elif dest == "notify":  # a list, or URLs separated by spaces
                items = raw if isinstance(raw, list) else str(raw).split()
                value = [check_url(str(item)) for item in items]
            else:
                value = convert(str(raw))
        except ValueError:
            raise InputError(f"{name} in {where} is not a valid value: {raw!r}") from None
        if dest == "runtime" and value not in RUNTIMES:
            raise InputError(f"runtime in {where} must be one of {', '.join(RUNTIMES)}")
        setattr(config.option, dest, value)


class CleanUpGuard:
    """Once every check has run, the run's end is not interrupted: pytest tears the session's
    fixtures down (every n8n stopped, every restored copy removed) in pytest_sessionfinish,
    where an interrupt escapes as a traceback and skips the rest. One that arrives from the
    end of the checks on (a CI job's timeout just then) is ignored, and the verdicts stand."""

    def __init__(self) -> None:
        self._ignoring: contextlib.ExitStack | None = None

    def _ignore_interrupts(self) -> None:
        if self._ignoring is None:
            self._ignoring = contextlib.ExitStack()
            self._ignoring.enter_context(interrupts_ignored())

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtestloop(self) -> Generator[None, object, object]:
        """The checks; interrupts are ignored from their end on."""
        result = yield
        self._ignore_interrupts()
        return result

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self) -> Generator[None, object, object]:
        """The session's end, interrupts ignored (also after an interrupted loop)."""
        self._ignore_interrupts()
        assert self._ignoring is not None
        with self._ignoring:
            return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Load the snapshots and, unless told otherwise, point the HTML and JUnit reports."""
    in_suite = _args_in_suite(config)
    if not any(in_suite):
        return
    for name in UNUSED_PLUGINS if all(in_suite) else ():  # `pytest tests verify` keeps them
        unused = config.pluginmanager.get_plugin(name)
        if unused is not None:
            config.pluginmanager.unregister(unused)
    worker: dict[str, Any] | None = getattr(config, "workerinput", None)
    # A CI job's timeout, docker stop or a service manager stops the run as Ctrl-C does: the
    # fixtures' finalizers stop every n8n and remove every restored copy. Once: a second
    # signal (a CI job's next SIGTERM, Ctrl-C pressed again) would cut that short, even while
    # pytest still reports the first (pytest_unconfigure puts the handlers back).
    interrupts = contextlib.ExitStack()
    interrupts.enter_context(
        interrupts_as_keyboard_interrupt(lambda: interrupt_workers(config), once=True)
    )
    config.stash[INTERRUPTS_KEY] = interrupts
    config.pluginmanager.register(CleanUpGuard(), "verify.clean-up-guard")
    try:
        apply_verify_settings(config, os.environ)
        if worker is not None:  # a parallel worker: what the controller fetched and chose
            chosen = worker.get(WORKER_INPUT)
            if chosen is None:
                raise pytest.UsageError("a verify worker was started without its snapshots")
            config.option.snapshots = Path(chosen["snapshots"])
            config.option.key_store = Path(chosen["key_store"])
            config.option.runtime = chosen["runtime"]
            if chosen.get("files") is not None:  # --repo: this worker fetches its groups' files
                repo = _snapshots_repository(config)
                if repo is None:
                    raise pytest.UsageError("a verify worker was started without --repo")
                config.stash[FILES_KEY] = SnapshotFiles.from_wire(repo, chosen["files"])
            config.option.repo = config.option.key_repo = None
        for url in config.getoption("notify"):
            check_url(url)
        postgres = _postgres_option(config)
        cases = _load_cases(config)
    except BackupError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[CASES_KEY] = cases
    config.stash[SUMMARIES_KEY] = {case.case_id: SnapshotSummary(case.case_id) for case in cases}
    if worker is not None:
        return  # the controller reports, records and notifies
    config.stash[STARTED_KEY] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    _say(config, ping_start(config.getoption("notify")))
    # What killed runs left: their containers first (they may still run on a restored copy),
    # then the restored copies, logs, fetched snapshots and keys.
    _say(config, _remove_abandoned_elsewhere(cases, postgres))
    _say(config, remove_abandoned())
    config.pluginmanager.register(VerifyReportTitle(), "verify.report-title")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    # Reports name workflows, credentials and keys' fingerprints: private to the user (0600),
    # like everything else this run writes.
    os.umask(0o077)
    reports = _reports_base(config) / REPORTS_DIR
    reports.mkdir(mode=0o700, exist_ok=True)
    reports.chmod(0o700)
    # Each run its own names: a second run started in the same second must not overwrite them.
    html_report = None
    if not config.option.htmlpath:
        html_report = reserve_new_file(reports, f"verify-{stamp}", ".html")
        config.option.htmlpath = str(html_report)
    config.option.self_contained_html = True
    if not config.option.xmlpath:
        config.option.xmlpath = str(
            html_report.with_suffix(".xml")
            if html_report is not None
            else reserve_new_file(reports, f"verify-{stamp}", ".xml")
        )


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: each worker verifies what the controller fetched, with its runtime."""
    config = node.config
    cases = config.stash.get(CASES_KEY, None)
    if cases:
        files = config.stash.get(FILES_KEY, None)
        node.workerinput[WORKER_INPUT] = {
            "snapshots": str(config.getoption("snapshots")),
            "key_store": str(config.getoption("key_store")),
            "runtime": cases[0].runtime,
            "files": files.to_wire() if files is not None else None,
        }


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist: each snapshot-and-target group on one worker, whatever --dist says."""
    if not config.stash.get(CASES_KEY, None):
        return None
    return snapshot_scheduler(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: no more workers than cores, nor than memory holds n8n instances."""
    if not _runs_verify_suite(config):
        return None
    return parallel_workers(os.cpu_count() or 1, available_memory())


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Say which snapshot the next test is of, before this one's fixtures go: a snapshot
    fetched from a repository stays for the next group when it is of the same snapshot."""
    case = _case_of(nextitem) if nextitem is not None else None
    item.config.stash[NEXT_FOLDER_KEY] = case.folder if case is not None else None


def _case_of(item: pytest.Item) -> SnapshotCase | None:
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("case") if callspec else None
    return case if isinstance(case, SnapshotCase) else None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Under pytest-xdist the controller learns each snapshot's summary from its worker."""
    data = getattr(report, "n8n_verify_summary", None)
    node = getattr(report, "node", None)
    if data is None or node is None:
        return  # a serial run: the summary is this process's own
    summaries = node.config.stash.get(SUMMARIES_KEY, None)
    if summaries is not None:
        summaries[data["case_id"]] = SnapshotSummary.from_wire(data)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One group of tests per snapshot, with the snapshot's id as the test id."""
    if "case" in metafunc.fixturenames and _in_suite(Path(metafunc.definition.path)):
        cases = metafunc.config.stash.get(CASES_KEY, [])
        metafunc.parametrize(
            "case", cases, ids=[case.case_id for case in cases], scope="session", indirect=True
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the opt-in checks for the snapshots they were not asked for."""
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        case = _case_of(item)
        name = item.originalname if isinstance(item, pytest.Function) else item.name
        optional = case is not None and not case.test_credentials
        (dropped if optional and name in OPT_IN_CHECKS else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.hookimpl(optionalhook=True)
def pytest_metadata(metadata: dict[str, Any], config: pytest.Config) -> None:
    """The report's Environment table: what matters for a restore, not every pytest plugin."""
    if not _runs_verify_suite(config):
        return
    for unrelated in ("Packages", "Plugins"):
        metadata.pop(unrelated, None)
    metadata["n8n-restore-verify"] = tool_version()
    metadata["Times"] = "UTC"


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Say what is being verified, at the top of the run."""
    cases = config.stash.get(CASES_KEY, None)
    if cases is None:
        return []
    return [
        f"n8n-restore-verify {tool_version()}",
        f"n8n snapshots: {len(cases)} under {config.getoption('snapshots')}",
        f"runtime: {config.stash.get(RUNTIME_NOTE_KEY, '-')}",
        f"key store: {config.getoption('key_store')}; report: {config.option.htmlpath}",
    ]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Count outcomes per snapshot and attach n8n's log to a failing test."""
    report = yield
    case = _case_of(item)
    summaries = item.config.stash.get(SUMMARIES_KEY, None)
    if case is None or summaries is None:
        return report  # not a verify test: another suite's own "case" parameter, say
    summary = summaries[case.case_id]
    summary.test_seconds += report.duration
    name = item.originalname if isinstance(item, pytest.Function) else item.name
    if not summary.required:
        summary.required = suite_checks(item)
        if not case.test_credentials:
            summary.required -= OPT_IN_CHECKS
    if report.when == "teardown":  # JUnit takes a test's properties from its last report
        report.user_properties.extend(_junit_properties(case, summary))
    if report.failed:
        summary.failed.append(name)
        cause = _first_cause(report)
        first = summary.setup_failures.setdefault(cause, name) if report.when == "setup" else name
        if first != name:  # a fixture failed once: its dependents point there, nothing repeated
            report.longrepr = f"not run: {plain_check_name(first)} failed (see {first})"
        else:
            summary.causes.append(f"{name}: {cause}")
            _attach_log(report, case)
    elif report.when == "call" and report.passed:
        summary.passed.add(name)
    if hasattr(item.config, "workerinput"):
        report.n8n_verify_summary = summary.to_wire()  # type: ignore[attr-defined]
    return report


def _attach_log(report: pytest.TestReport, case: SnapshotCase) -> None:
    """n8n's log, collapsed in the report, beside the check that failed first."""
    log = case.instance_log()
    if log:
        from pytest_html import extras

        previous = getattr(report, "extras", [])
        report.extras = [*previous, extras.text(log, name="n8n log")]  # type: ignore[attr-defined]


def _junit_properties(case: SnapshotCase, summary: SnapshotSummary) -> list[tuple[str, object]]:
    return [
        ("snapshot_id", summary.snapshot_id),
        ("instance", summary.instance),
        ("source_n8n_version", summary.source_version),
        ("target_n8n_version", summary.target_version),
        ("runtime", case.runtime),
    ]


def _first_cause(report: pytest.TestReport) -> str:
    """The first line of why a check failed (its message, not the traceback)."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = getattr(crash, "message", None) or str(report.longrepr)
    line = next((part.strip() for part in text.splitlines() if part.strip()), "failed")
    for prefix in ("AssertionError: ", "Failed: "):
        line = line.removeprefix(prefix)
    return line[:CAUSE_LIMIT]


def suite_docstrings(module: Any) -> dict[str, str]:
    """Each check of the suite and the first paragraph of its docstring."""
    return {
        name: " ".join((value.__doc__ or "").split("\n\n")[0].split())
        for name, value in vars(module).items()
        if name.startswith("test_") and callable(value)
    }


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
        config = session.config
        prefix.append(PRINT_CSS)
        prefix.append(summary_table(list(summaries.values())))
        facts = {
            "tool": f"n8n-restore-verify {tool_version()}",
            "command line": " ".join(  # passwords in DSNs and webhook tokens hidden
                ["pytest", *(str(masked(str(arg))) for arg in config.invocation_params.args)]
            ),
            "host": socket.gethostname(),
            "started (UTC)": config.stash.get(STARTED_KEY, "?"),
            "snapshots": _snapshots_source(config),
            "key store": f"{config.getoption('key_store')} (key values are never shown)",
            "runtime": config.stash.get(RUNTIME_NOTE_KEY, "-"),
        }
        prefix.append(run_facts(facts))
        module = next((item.module for item in session.items if hasattr(item, "module")), None)
        if module is not None:
            prefix.append(checks_table(suite_docstrings(module)))


def _snapshots_source(config: pytest.Config) -> str:
    remote = config.stash.get(REMOTE_KEY, None)
    if remote is None:
        return str(config.getoption("snapshots"))
    ids = ", ".join(item.stored.short_id for item in remote.fetched.values())
    return f"restic repository {remote.repo.shown} (snapshots {ids}, fetched for this run)"


class VerifyReportTitle:
    """Registered for a verify run only: other suites' HTML reports keep their own title."""

    def pytest_html_report_title(self, report: Any) -> None:
        """A title that says what the report is about."""
        report.title = f"n8n restore verification (n8n-restore-verify {tool_version()})"


def _postgres_option(config: pytest.Config) -> PostgresTarget | None:
    """The --postgres server, checked before anything runs (one host, one port, a database)."""
    dsn = config.getoption("postgres_dsn")
    if not dsn:
        return None
    from backup.n8n.postgres import PostgresTarget

    return PostgresTarget.from_dsn(dsn)


def _remove_abandoned_elsewhere(
    cases: list[SnapshotCase], postgres: PostgresTarget | None
) -> list[str]:
    """What killed runs of this machine left where this run works too: containers on the
    Docker engine, throwaway databases and roles on the --postgres server."""
    said = []
    if any(case.runtime == "docker" for case in cases):
        from backup.n8n.instances.docker_sessions import remove_abandoned_sessions

        said += remove_abandoned_sessions()
    if postgres is not None:
        from backup.n8n.postgres_throwaway import remove_abandoned_databases

        said += remove_abandoned_databases(postgres)
    return said


def _say(config: pytest.Config, problems: list[str]) -> None:
    """What must not fail the run (a notification's problem, what killed runs left and was
    removed): one line each on the terminal (on stderr while pytest configures, before its
    terminal reporter is there)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for problem in problems:
        if reporter is not None:
            reporter.write_line(f"n8n-verify: {problem}")
        else:
            print(f"n8n-verify: {problem}", file=sys.stderr)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Record each verified snapshot's result beside it, for ``n8n-backup list`` and ``prune``."""
    cases: list[SnapshotCase] | None = session.config.stash.get(CASES_KEY, None)
    if not cases or hasattr(session.config, "workerinput"):
        return  # on a parallel worker: the controller records
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
                source_version=summary.source_version,
                causes=summary.causes,
                counts=summary.counts(),
                durations={"boot": summary.boot_seconds, "checks": round(summary.test_seconds, 1)},
            )
        )
    report = str(session.config.option.htmlpath)
    xml = session.config.option.xmlpath
    by_snapshot = {(snapshot_ids[folder], folder): targets for folder, targets in by_folder.items()}
    write_result(Path(report), Path(xml) if xml else None, verified_at, by_snapshot)
    _say(
        session.config,
        notify(
            session.config.getoption("notify"),
            run_outcome(by_snapshot, report),
            session.config.getoption("notify_on"),
        ),
    )
    for folder, targets in by_folder.items():
        record = VerificationRecord(snapshot_ids[folder], verified_at, report, targets)
        try:
            write_record(folder, record)
        except OSError as exc:  # a read-only backup store must not fail the verification
            _say(session.config, [f"cannot record the result beside {folder}: {exc}"])
    remote = session.config.stash.get(REMOTE_KEY, None)
    if remote is not None:
        verdicts = {
            folder: {
                t.target_version: t.result == "PASSED" for t in targets if t.result != "PARTIAL"
            }
            for folder, targets in by_folder.items()
        }
        _say(session.config, remote.record(verdicts))
    metrics_file = session.config.getoption("metrics_file")
    if metrics_file:
        try:
            if remote is None:
                write_metrics(Path(session.config.getoption("snapshots")), metrics_file)
            else:
                write_repository_metrics(stored_snapshots(remote.repo), metrics_file)
        except (OSError, BackupError) as exc:
            _say(session.config, [f"cannot write the metrics file: {exc}"])


def pytest_unconfigure(config: pytest.Config) -> None:
    """Snapshots and keys fetched from a repository for this run go (also after a failure)."""
    remote = config.stash.get(REMOTE_KEY, None)
    if remote is not None:
        with interrupts_ignored():  # a second SIGTERM must not leave half the keys behind
            remote.remove()
    interrupts = config.stash.get(INTERRUPTS_KEY, None)
    if interrupts is not None:
        interrupts.close()
