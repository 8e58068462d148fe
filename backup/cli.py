"""``n8n-backup``: argument parsing and exit codes only; the work is in the other modules.

Exit codes: 0 ok, 1 failure, 2 bad input, 3 executions still running, 12 encryption key
problem, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from backup.abandoned import RESTORE_FETCH_PREFIX, owned_temp_dir, remove_abandoned
from backup.about import tool_version
from backup.errors import BackupError, InputError, RepositoryError
from backup.interrupts import interrupts_as_keyboard_interrupt
from backup.keystore import KeyStore
from backup.listing import format_listings, list_snapshots
from backup.manifest import INSTANCE_NAME
from backup.metrics import write_metrics, write_repository_metrics
from backup.n8n import npm
from backup.n8n.api import N8nApi
from backup.n8n.binary_data import storage_roots
from backup.n8n.extensions import extension_folders
from backup.n8n.folder import N8nFolder, locate
from backup.notify import NOTIFY_ON, ON_FAILURE, Outcome, check_url, notify, ping_start
from backup.repository import keys as key_copies
from backup.repository import snapshots as stored
from backup.repository.restic import (
    Password,
    ResticRepository,
    password_source,
    repository_from,
    require_own_secret,
)
from backup.restore.workflows import restore_workflows
from backup.retention import RetentionPolicy, prune
from backup.settings import (
    apply_settings,
    describe,
    env_name,
    read_config,
    setting_name,
    unknown_top_level,
)
from backup.snapshot import SnapshotRequest, create_snapshot

if TYPE_CHECKING:  # PostgreSQL and Docker are extras: imported where a command needs them
    from backup.n8n.container import ContainerSource
    from backup.n8n.postgres import PostgresTarget

API_KEY_ENV = "N8N_API_KEY"
QUIET_HELP = "print nothing but errors (for cron)"
METRICS_HELP = (
    "write the snapshot root's metrics there afterwards, in Prometheus' text format (for "
    "node_exporter's textfile collector)"
)
CONFIG_HELP = "settings file (TOML; default $N8N_BACKUP_CONFIG or ./n8n-backup.toml)"
SHOW_SETTINGS_HELP = (
    "print each setting with its value and where it came from (command line, environment "
    "N8N_BACKUP_*, settings file, default), then stop"
)
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


def read_api_key(api_key_file: Path | None) -> str:
    """The public API key from --api-key-file, else from N8N_API_KEY."""
    if api_key_file is not None:
        try:
            key = api_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(f"cannot read --api-key-file {api_key_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise InputError(
                f"--api-key-file {api_key_file} is not UTF-8 text: give the file that holds "
                "only the API key"
            ) from None
    else:
        key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise InputError(f"no API key: give --api-key-file FILE or set {API_KEY_ENV}")
    return key


def _snapshot_source(
    args: argparse.Namespace, container: ContainerSource | None, *, on_postgres: bool
) -> tuple[N8nFolder | None, dict[str, str] | None, str | None]:
    """The n8n folder, the environment holding its key, and the API URL to use."""
    if container is not None:
        source = container
        if source.database_kind == "postgres" and not on_postgres:
            raise InputError(
                f"container {args.container} runs n8n on PostgreSQL: add --postgres DSN or "
                "--postgres-container NAME"
            )
        api_url = args.api_url or source.api_url
        if api_url is None:
            raise InputError(
                f"container {args.container} publishes no port for 5678: give --api-url"
            )
        return source.folder, source.environment, api_url
    if args.n8n_folder:
        return locate(args.n8n_folder, with_database=not on_postgres), None, args.api_url
    if on_postgres:
        return None, None, args.api_url
    raise InputError("give --n8n-folder PATH, --container NAME, or --postgres DSN")


def _postgres_target(
    args: argparse.Namespace, container: ContainerSource | None
) -> PostgresTarget | None:
    """--postgres DSN, or --postgres-container NAME (with n8n's own DB_* settings when
    --container names n8n's container)."""
    if args.postgres and args.postgres_container:
        raise InputError("give --postgres or --postgres-container, not both")
    if args.postgres:
        from backup.n8n.postgres import PostgresTarget

        return PostgresTarget.from_dsn(args.postgres, args.postgres_schema, args.table_prefix)
    if args.postgres_container:
        from backup.n8n.container import postgres_target_for_container

        return postgres_target_for_container(
            args.postgres_container, container, args.postgres_schema, args.table_prefix
        )
    return None


def _notices(args: argparse.Namespace) -> Callable[[str], None]:
    """Where progress and notices go: stderr, or nowhere with --quiet (cron mails any output)."""
    if args.quiet:
        return lambda message: None
    return lambda message: print(f"n8n-backup: {message}", file=sys.stderr, flush=True)


def cmd_snapshot(args: argparse.Namespace) -> int:
    """Take one snapshot and print its path as the last line."""
    if args.container and args.n8n_folder:
        raise InputError("give --container or --n8n-folder, not both")
    # Inspected once: both the data folder and the PostgreSQL settings come from it.
    container = _inspect(args.container) if args.container else None
    postgres = _postgres_target(args, container)
    folder, key_environ, api_url = _snapshot_source(
        args, container, on_postgres=postgres is not None
    )
    if api_url is None:
        raise InputError("give --api-url, the address of n8n (e.g. http://localhost:5678)")
    repo = _repository(args) if args.repo else None
    if repo is not None:
        repo.open()  # the repository answers before anything is copied
    with N8nApi(api_url, read_api_key(args.api_key_file)) as api:
        path = create_snapshot(
            SnapshotRequest(
                n8n_folder=folder,
                api=api,
                out_dir=_snapshot_folder(args),
                key_store=KeyStore(args.key_store),
                table_prefix=args.table_prefix,
                key_environ=key_environ,
                extension_folders=(
                    container.extension_folders
                    if container is not None
                    else tuple(extension_folders(os.environ))
                ),
                binary_roots=tuple(
                    storage_roots(folder.path if folder else None, key_environ or os.environ)
                    if container is None
                    else container.binary_roots
                ),
                postgres=postgres,
                wait_timeout=args.wait_timeout,
                force=args.force,
                say=_notices(args),
                instance=args.instance,
            )
        )
    args.done = f"snapshot {path.name} taken"
    if repo is not None:
        try:
            item = stored.store(repo, path, _notices(args))
        except RepositoryError as exc:
            raise RepositoryError(f"{exc}; the snapshot stays in {path}") from None
        args.done += f", stored in {repo.shown} as {item.stored.short_id}"
        if not args.keep_local:
            shutil.rmtree(path)  # the repository holds every file of it (confirmed)
            args.done += " (local copy removed)"
    _update_metrics(args, _snapshot_folder(args), repo)
    if not args.quiet:
        print(path if repo is None else f"{repo.shown} {item.stored.short_id}")
    return 0


def notify_url(text: str) -> str:
    """--notify: a receiver URL (see backup.notify)."""
    try:
        return check_url(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def instance_name(text: str) -> str:
    """--instance: a name fit for a report and a metric label."""
    if not INSTANCE_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an instance name: letters, digits and ._:@/- (up to 128)"
        )
    return text


def _update_metrics(
    args: argparse.Namespace, root: Path | None, repo: ResticRepository | None = None
) -> None:
    """Rewrite --metrics-file after a change to the root (or, with --repo, to the repository);
    a failure is said, never fatal."""
    if not args.metrics_file:
        return
    try:
        if repo is not None:
            write_repository_metrics(stored.stored_snapshots(repo), args.metrics_file)
        elif root is not None:
            write_metrics(root, args.metrics_file)
    except (OSError, RepositoryError) as exc:
        said = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        print(
            f"n8n-backup: cannot write the metrics file {args.metrics_file}: {said}",
            file=sys.stderr,
        )


def _inspect(container: str) -> ContainerSource:
    from backup.n8n.container import inspect_n8n_container

    return inspect_n8n_container(container)


def cmd_restore(args: argparse.Namespace) -> int:
    """Full restore into a container (--container), or workflows only through the API."""
    if args.resume:
        if not args.container:
            raise InputError("--resume needs --container NAME, the n8n container to put right")
        from backup.restore.container import resume_restore

        print(resume_restore(args.container, postgres_dsn=args.postgres, api_url=args.api_url))
        return 0
    if args.repo:
        if args.snapshot is not None:
            raise InputError("give the snapshot folder or --repo REPOSITORY, not both")
        return _restore_from_repository(args)
    if args.snapshot is None:
        raise InputError("give the snapshot folder to restore (or --resume --container NAME)")
    if not args.container:
        if not args.api_url:
            raise InputError(
                "give --container NAME for a full restore, or --api-url URL to restore the "
                "workflows only"
            )
        return _restore_workflows_only(args)
    from backup.restore.container import RestoreRequest, restore_into_container

    request = RestoreRequest(
        args.snapshot,
        args.container,
        postgres_dsn=args.postgres,
        postgres_schema=args.postgres_schema,
        table_prefix=args.table_prefix,
        force=args.force,
        api_url=args.api_url,
    )
    result = restore_into_container(request)
    print(
        f"restored snapshot {result.snapshot_id} into {result.container}: "
        f"{result.workflows} workflows load, {result.credentials} credentials decrypt; "
        f"previous database kept as {result.rollback}"
    )
    return 0


def _restore_from_repository(args: argparse.Namespace) -> int:
    """Fetch one stored snapshot into a private temporary folder, restore it from there, and
    remove the copy afterwards (also on failure)."""
    repo = _repository(args)
    wanted = [args.repo_snapshot] if args.repo_snapshot else ["latest"]
    chosen = stored.select(stored.stored_snapshots(repo), wanted)
    if len(chosen) != 1:
        instances = ", ".join(sorted({item.instance for item in chosen})) or "none"
        raise InputError(
            f"the repository holds snapshots of several instances ({instances}) or none: "
            "give --repo-snapshot ID"
        )
    with owned_temp_dir(RESTORE_FETCH_PREFIX) as staging:
        args.snapshot = stored.fetch(repo, chosen[0].stored, Path(staging))
        args.repo = None
        return cmd_restore(args)


def _restore_workflows_only(args: argparse.Namespace) -> int:
    with N8nApi(args.api_url, read_api_key(args.api_key_file)) as api:
        if args.key_store is None:
            raise InputError(
                "give --key-store DIR: the snapshot is authenticated with its key before "
                "anything is sent to n8n"
            )
        result = restore_workflows(
            args.snapshot, api, KeyStore(args.key_store), overwrite=args.overwrite
        )
    print(
        f"workflows: {len(result.created)} created, {len(result.overwritten)} overwritten, "
        f"{len(result.skipped)} kept as they were (same name; --overwrite replaces them), "
        f"{len(result.failed)} failed"
    )
    for name, reason in result.failed:
        print(f"failed: {name!r}: {reason}")
    if result.credentials_needed:
        print("credentials to re-create by hand (they are not in a workflow export):")
        for credential, users in sorted(result.credentials_needed.items()):
            print(f"  {credential}: used by {len(users)} workflow(s), e.g. {users[0]!r}")
    return 1 if result.failed else 0


def _add_snapshot_folder(command: argparse.ArgumentParser) -> None:
    """--snapshots DIR, the name every command uses; the positional folder is the old spelling."""
    command.add_argument("--snapshots", type=Path, metavar="DIR", help="folder of snapshots")
    command.add_argument("root", type=Path, nargs="?", help=argparse.SUPPRESS)


def _snapshot_folder(args: argparse.Namespace) -> Path:
    """The folder of snapshots, by its name or its old spelling; one of them is required."""
    # The positional folder is only ever typed: it wins over a --snapshots from a setting.
    folder: Path | None = getattr(args, "root", None) or getattr(args, "snapshots", None)
    folder = folder or getattr(args, "out", None)
    if folder is None:
        raise InputError("give --snapshots DIR, the folder of snapshots")
    return folder


def cmd_list(args: argparse.Namespace) -> int:
    """Print the snapshots of a backup root, or the rollback copies restores kept."""
    if args.container:
        from backup.restore.rollbacks import format_rollbacks, list_rollbacks, pending_restore

        source = _inspect(args.container)
        postgres = None
        if args.postgres:
            from backup.n8n.postgres import PostgresTarget

            postgres = PostgresTarget.from_dsn(args.postgres)
        rollbacks = list_rollbacks(source, postgres)
        print(format_rollbacks(source, rollbacks, pending_restore(source), args.json))
        return 0
    if args.repo:
        print(stored.format_stored(stored.stored_snapshots(_repository(args)), args.json))
        return 0
    if args.snapshots is None and args.root is None:
        raise InputError(
            "give --snapshots DIR, the folder of snapshots to list (or --container NAME, or "
            "--repo REPOSITORY)"
        )
    print(format_listings(list_snapshots(_snapshot_folder(args)), args.json))
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    """Apply the retention policy; with --dry-run only say what would go."""
    policy = RetentionPolicy(args.keep_daily, args.keep_weekly, args.keep_monthly)
    if args.repo:
        repo = _repository(args)
        plan = stored.prune(repo, policy, dry_run=args.dry_run)
        if not args.dry_run:
            _update_metrics(args, None, repo)
        args.done = f"{len(plan.remove)} snapshots {'would go' if args.dry_run else 'removed'}"
        if not args.quiet or args.dry_run:
            print("\n".join(plan.report(dry_run=args.dry_run)))
        return 0
    result = prune(_snapshot_folder(args), policy, datetime.now(UTC), dry_run=args.dry_run)
    if not args.dry_run:
        _update_metrics(args, _snapshot_folder(args))
    if args.quiet and not args.dry_run:
        return 0
    for line in result.report(dry_run=args.dry_run):
        print(line)
    return 0


def cmd_repo(args: argparse.Namespace) -> int:
    """``repo init`` / ``repo check`` of a snapshot (or key) repository."""
    repo = _repository(args)
    if args.action == "init":
        repo.init()
        print(f"restic repository {repo.shown} created; keep its password apart from it")
        return 0
    repo.check(args.read_data_subset)
    sample = f", {args.read_data_subset} of the data read back" if args.read_data_subset else ""
    print(f"restic repository {repo.shown}: no errors found{sample}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """``keys push`` / ``keys pull``: the key store's second copy."""
    if args.key_store is None:
        raise InputError("give --key-store DIR, the key store to copy from or into")
    if bool(args.key_repo) == bool(args.key_folder):
        raise InputError("give --key-repo REPOSITORY or --key-folder DIR (one of them)")
    local = KeyStore(args.key_store)
    if args.key_folder:
        other = KeyStore(args.key_folder)
        source, target = (local, other) if args.action == "push" else (other, local)
        added = key_copies.copy_keys(source, target)
        where = str(args.key_folder)
    else:
        repo = _key_repository(args)
        added = (
            key_copies.push(local, repo) if args.action == "push" else key_copies.pull(repo, local)
        )
        where = repo.shown
    verb = "pushed to" if args.action == "push" else "added from"
    print(f"{added} keys {verb} {where}")
    return 0


def _repository(args: argparse.Namespace) -> ResticRepository:
    """--repo with its password source (RESTIC_PASSWORD_FILE/COMMAND by default)."""
    return repository_from(
        args.repo,
        args.repo_password_file,
        args.repo_password_command,
        args.repo_option or [],
        what="--repo",
        environ_default=Password.from_environ(os.environ),
    )


def _key_repository(args: argparse.Namespace) -> ResticRepository:
    """--key-repo: its own password, never the snapshot repository's."""
    repo = repository_from(
        args.key_repo,
        args.key_repo_password_file,
        args.key_repo_password_command,
        args.key_repo_option or [],
        what="--key-repo",
    )
    snapshots_password = password_source(
        getattr(args, "repo_password_file", None), getattr(args, "repo_password_command", None)
    ) or Password.from_environ(os.environ)
    require_own_secret(repo, snapshots_password)
    return repo


def _add_repository(command: argparse.ArgumentParser, name: str, what: str) -> None:
    """--NAME REPOSITORY and its password source and restic options."""
    command.add_argument(f"--{name}", metavar="REPOSITORY", help=what)
    command.add_argument(
        f"--{name}-password-file",
        type=Path,
        metavar="FILE",
        help="file holding its restic password"
        + (" (default $RESTIC_PASSWORD_FILE)" if name == "repo" else ""),
    )
    command.add_argument(
        f"--{name}-password-command",
        metavar="CMD",
        help="command printing its restic password"
        + (" (default $RESTIC_PASSWORD_COMMAND)" if name == "repo" else ""),
    )
    command.add_argument(
        f"--{name}-option",
        action="append",
        metavar="KEY=VALUE",
        help="restic extended option for it (repeatable), e.g. sftp.command=...",
    )


REPO_HELP = "restic repository of snapshots (a path, sftp:..., rest:..., s3:..., b2:...)"
KEY_REPO_HELP = "restic repository for the key store's copy (its own password)"


def cmd_install_n8n(args: argparse.Namespace) -> int:
    """Install an n8n version from npm and print its launcher as the last line."""
    # npm's own output only on a terminal; the launcher path is the last line (scripts read it).
    launcher = npm.install(args.version, log=not args.quiet and sys.stderr.isatty())
    if not args.quiet:
        print(launcher)
    return 0


def _install_n8n_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("version", nargs="?", default=npm.DEFAULT_N8N_VERSION)
    command.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    command.set_defaults(handler=cmd_install_n8n)


class _Parser(argparse.ArgumentParser):
    """No abbreviated options: "--cont" must not pass for --container, and a setting from the
    environment must never win over an option the operator typed in short."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Bad usage is one line too, like every other error."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full command-line interface."""
    parser = _Parser(
        prog="n8n-backup",
        description="Back up n8n and keep its encryption key apart from the backup.",
        epilog="exit codes: 0 ok, 1 failure, 2 bad input, 3 executions still running, "
        "12 encryption key problem, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"n8n-backup {tool_version()}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    snap = commands.add_parser("snapshot", help="take a snapshot of a running n8n")
    snap.add_argument("--n8n-folder", type=Path, help=".n8n folder or its parent")
    snap.add_argument("--container", help="name of a Docker container that runs n8n")
    snap.add_argument(
        "--postgres",
        metavar="DSN",
        help="n8n's PostgreSQL database: postgresql://USER@HOST:PORT/DB (password in PGPASSWORD)",
    )
    snap.add_argument(
        "--postgres-container",
        metavar="NAME",
        help="n8n's PostgreSQL as a Docker container (address, user and password found from it "
        "and from the n8n container)",
    )
    snap.add_argument(
        "--postgres-schema",
        default=os.environ.get("DB_POSTGRESDB_SCHEMA", "public"),
        help="DB_POSTGRESDB_SCHEMA (default public)",
    )
    snap.add_argument(
        "--api-url",
        help="n8n's address, e.g. http://localhost:5678 (with --container: "
        "the published port by default)",
    )
    snap.add_argument("--api-key-file", type=Path, help=f"file with the API key (or {API_KEY_ENV})")
    snap.add_argument(
        "--snapshots",
        type=Path,
        dest="out",
        metavar="DIR",
        help="folder of snapshots: the new one goes there",
    )
    snap.add_argument("--out", type=Path, dest="out", help=argparse.SUPPRESS)  # old name
    snap.add_argument("--key-store", type=Path, help="folder for encryption keys (required)")
    snap.add_argument(
        "--wait-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for running executions to finish first (default 300)",
    )
    snap.add_argument(
        "--force",
        action="store_true",
        help="back up even while executions run (the manifest records it)",
    )
    snap.add_argument(
        "--table-prefix", default=os.environ.get("DB_TABLE_PREFIX", ""), help="DB_TABLE_PREFIX"
    )
    snap.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    snap.add_argument("--metrics-file", type=Path, metavar="FILE", help=METRICS_HELP)
    _add_notify(snap)
    snap.add_argument(
        "--instance",
        type=instance_name,
        help="which n8n this is, in reports and metrics (default: the API URL's host:port)",
    )
    _add_repository(snap, "repo", REPO_HELP + ": store the snapshot there once it is checked")
    snap.add_argument(
        "--keep-local",
        action="store_true",
        help="with --repo: keep the local copy too (by default it goes once the repository "
        "holds every file)",
    )
    snap.set_defaults(handler=cmd_snapshot)

    restore = commands.add_parser("restore", help="restore a snapshot into n8n in a container")
    restore.add_argument("snapshot", type=Path, nargs="?", help="snapshot folder")
    restore.add_argument(
        "--resume",
        action="store_true",
        help="after a killed restore: put the previous database back and start n8n",
    )
    restore.add_argument("--container", help="name of the n8n container (full restore)")
    restore.add_argument(
        "--api-key-file", type=Path, help=f"API key for a workflows-only restore (or {API_KEY_ENV})"
    )
    restore.add_argument(
        "--overwrite", action="store_true", help="workflows-only: replace same-named workflows"
    )
    restore.add_argument(
        "--key-store",
        type=Path,
        help="key store with the snapshot's key (workflows-only: to authenticate the snapshot)",
    )
    restore.add_argument(
        "--api-url",
        help="n8n's address; without --container: restore the workflows only, through the API",
    )
    restore.add_argument(
        "--force", action="store_true", help="restore even while executions are running"
    )
    restore.add_argument(
        "--postgres", metavar="DSN", help="the PostgreSQL database the container's n8n runs on"
    )
    restore.add_argument("--postgres-schema", help="DB_POSTGRESDB_SCHEMA (default: the snapshot's)")
    restore.add_argument("--table-prefix", help="DB_TABLE_PREFIX (default: the snapshot's)")
    _add_repository(restore, "repo", REPO_HELP + ": restore a snapshot stored there")
    restore.add_argument(
        "--repo-snapshot",
        metavar="ID",
        help="with --repo: which snapshot (n8n-backup's or restic's id; default the newest)",
    )
    restore.set_defaults(handler=cmd_restore)

    listing = commands.add_parser(
        "list", help="list the snapshots of a backup root, or a container's rollback copies"
    )
    _add_snapshot_folder(listing)
    listing.add_argument(
        "--container", help="list the rollback copies restores kept for this n8n container"
    )
    listing.add_argument(
        "--postgres", metavar="DSN", help="with --container: its n8n's PostgreSQL database"
    )
    listing.add_argument("--json", action="store_true", help="JSON for scripts")
    _add_repository(listing, "repo", REPO_HELP + ": list the snapshots stored there")
    listing.set_defaults(handler=cmd_list)

    from backup.retention import non_negative_int

    prune_cmd = commands.add_parser(
        "prune",
        help="delete snapshots that the policy lets go, and interrupted ones older than 24h",
    )
    _add_snapshot_folder(prune_cmd)
    prune_cmd.add_argument(
        "--keep-daily", type=non_negative_int, default=30, help="days (default 30)"
    )
    prune_cmd.add_argument(
        "--keep-weekly", type=non_negative_int, default=13, help="weeks (default 13)"
    )
    prune_cmd.add_argument(
        "--keep-monthly", type=non_negative_int, default=0, help="months (default 0)"
    )
    prune_cmd.add_argument("--dry-run", action="store_true", help="only list what would go")
    _add_repository(prune_cmd, "repo", REPO_HELP + ": prune there (restic forget, then prune)")
    prune_cmd.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    prune_cmd.add_argument("--metrics-file", type=Path, metavar="FILE", help=METRICS_HELP)
    _add_notify(prune_cmd)
    prune_cmd.set_defaults(handler=cmd_prune)

    repo_cmd = commands.add_parser("repo", help="create or check a restic repository")
    repo_cmd.add_argument("action", choices=("init", "check"))
    _add_repository(repo_cmd, "repo", REPO_HELP)
    repo_cmd.add_argument(
        "--read-data-subset",
        metavar="N%|n/t",
        help="check: also read back this sample of the data (e.g. 5%%)",
    )
    repo_cmd.set_defaults(handler=cmd_repo)

    keys_cmd = commands.add_parser(
        "keys", help="push the key store to its second copy, or pull the keys from there"
    )
    keys_cmd.add_argument("action", choices=("push", "pull"))
    keys_cmd.add_argument("--key-store", type=Path, metavar="DIR", help="the local key store")
    _add_repository(keys_cmd, "key-repo", KEY_REPO_HELP)
    keys_cmd.add_argument(
        "--key-folder", type=Path, metavar="DIR", help="a plain folder as the second copy"
    )
    keys_cmd.set_defaults(handler=cmd_keys)

    install = commands.add_parser(
        "install-n8n", help="install an n8n version from the npm registry, with its Node.js"
    )
    _install_n8n_arguments(install)
    # The old spelling, `runtime install`, kept hidden for a release.
    old = commands.add_parser("runtime")
    old_install = old.add_subparsers(
        dest="runtime_command", required=True, metavar="ACTION", parser_class=_Parser
    )
    legacy_install = old_install.add_parser("install")
    _install_n8n_arguments(legacy_install)
    by_name = {
        "snapshot": snap,
        "restore": restore,
        "list": listing,
        "prune": prune_cmd,
        "repo": repo_cmd,
        "keys": keys_cmd,
        "install-n8n": install,
    }
    legacy_install.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    legacy_install.add_argument("--show-settings", action="store_true", help=argparse.SUPPRESS)
    legacy_install.set_defaults(command_name="install-n8n", command_parser=legacy_install)
    for name, command in by_name.items():
        command.add_argument("--config", type=Path, metavar="FILE", help=CONFIG_HELP)
        command.add_argument("--show-settings", action="store_true", help=SHOW_SETTINGS_HELP)
        command.set_defaults(command_name=name, command_parser=command)
    parser.set_defaults(all_commands=by_name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``n8n-backup``."""
    given = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(given)
    return run_command("n8n-backup", lambda a: _run_with_settings(a, given), args)


def _run_with_settings(args: argparse.Namespace, given: list[str]) -> int:
    """Complete ``args`` from the environment and the settings file, then run the command
    (or, with --show-settings, say where each value came from)."""
    config, config_path = read_config(args.config, os.environ)
    commands: dict[str, argparse.ArgumentParser] = args.all_commands
    names = {n for sub in commands.values() for a in sub._actions if (n := setting_name(a))}
    stray = unknown_top_level(config, names, set(commands))
    if stray:
        raise InputError(
            f"unknown setting {stray[0]!r} in {config_path}: the names are the long options "
            "of n8n-backup's commands without the dashes"
        )
    origins = apply_settings(
        args.command_parser, args.command_name, args, given, os.environ, config, config_path
    )
    if args.show_settings:
        print(describe(args, args.command_parser, origins))
        return 0
    if args.command_name == "snapshot" and args.key_store is None:
        raise InputError(
            f"give --key-store DIR (or {env_name('key-store')}, or key-store in the settings "
            "file): where the encryption key is kept, apart from the snapshots"
        )
    handler: Handler = args.handler
    urls: list[str] = getattr(args, "notify", None) or []
    if not urls:
        return handler(args)
    _say_problems(ping_start(urls))
    try:
        code = handler(args)
    except BackupError as exc:
        _say_problems(notify(urls, Outcome(args.command_name, False, str(exc)), args.notify_on))
        raise
    done = f"{args.command_name} finished" + (f": {args.done}" if getattr(args, "done", "") else "")
    _say_problems(notify(urls, Outcome(args.command_name, True, done), args.notify_on))
    return code


def _say_problems(problems: list[str]) -> None:
    """Notification problems: said on stderr, never a failure of the backup itself."""
    for problem in problems:
        print(f"n8n-backup: {problem}", file=sys.stderr)


def _add_notify(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--notify",
        action="append",
        type=notify_url,
        metavar="URL",
        help="post the result there (repeatable): a JSON webhook, slack+https://... or "
        "ping+https://... (healthchecks.io-style)",
    )
    command.add_argument(
        "--notify-on",
        choices=NOTIFY_ON,
        default=ON_FAILURE,
        help="failure (default): webhooks hear of failures only; always: of every run",
    )


def run_command(prog: str, handler: Handler, args: argparse.Namespace) -> int:
    """Run a command's handler: one line on stderr for any expected failure, exit codes from
    the error tree, never a traceback (unless N8N_BACKUP_DEBUG is set). SIGTERM and SIGHUP
    stop it as Ctrl-C does: what it started is stopped and removed."""
    try:
        with interrupts_as_keyboard_interrupt():
            for removed in remove_abandoned():  # what runs killed outright left in /tmp
                print(f"{prog}: {removed}", file=sys.stderr)
            return handler(args)
    except BackupError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug of ours: still one line, and nothing of the user's changed
        print(
            f"{prog}: internal error ({type(exc).__name__}): please report it with the "
            "command you ran; set N8N_BACKUP_DEBUG=1 to see the traceback",
            file=sys.stderr,
        )
        if os.environ.get("N8N_BACKUP_DEBUG"):
            raise
        return 1


if __name__ == "__main__":
    sys.exit(main())
