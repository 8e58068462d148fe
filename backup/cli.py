"""``n8n-backup``: argument parsing and exit codes only; the work is in the other modules.

Exit codes: 0 ok, 1 failure, 2 bad input, 12 encryption key problem, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from backup import runtime
from backup.errors import BackupError, InputError
from backup.keystore import KeyStore
from backup.n8n_folder import locate
from backup.snapshot import SnapshotRequest, create_snapshot
from backup.sources.api import N8nApi

API_KEY_ENV = "N8N_API_KEY"
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


def read_api_key(api_key_file: Path | None) -> str:
    """The public API key from --api-key-file, else from N8N_API_KEY."""
    if api_key_file is not None:
        try:
            key = api_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(f"cannot read --api-key-file {api_key_file}: {exc.strerror}") from None
    else:
        key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise InputError(f"no API key: give --api-key-file FILE or set {API_KEY_ENV}")
    return key


def cmd_snapshot(args: argparse.Namespace) -> int:
    """Take one snapshot and print its path as the last line."""
    folder = locate(args.n8n_folder)
    with N8nApi(args.api_url, read_api_key(args.api_key_file)) as api:
        path = create_snapshot(
            SnapshotRequest(
                n8n_folder=folder,
                api=api,
                out_dir=args.out,
                key_store=KeyStore(args.key_store),
                table_prefix=args.table_prefix,
            )
        )
    print(path)
    return 0


def cmd_runtime_install(args: argparse.Namespace) -> int:
    """Install an n8n runtime and print its launcher as the last line."""
    print(runtime.install(args.version, log=not args.quiet))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full command-line interface."""
    parser = argparse.ArgumentParser(
        prog="n8n-backup",
        description="Back up n8n and keep its encryption key apart from the backup.",
        epilog="exit codes: 0 ok, 1 failure, 2 bad input, 12 encryption key problem",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    snap = commands.add_parser("snapshot", help="take a snapshot of a running n8n")
    snap.add_argument("--n8n-folder", type=Path, required=True, help=".n8n folder or its parent")
    snap.add_argument("--api-url", required=True, help="n8n's address, e.g. http://localhost:5678")
    snap.add_argument("--api-key-file", type=Path, help=f"file with the API key (or {API_KEY_ENV})")
    snap.add_argument("--out", type=Path, required=True, help="folder that receives snapshots")
    snap.add_argument("--key-store", type=Path, required=True, help="folder for encryption keys")
    snap.add_argument(
        "--table-prefix", default=os.environ.get("DB_TABLE_PREFIX", ""), help="DB_TABLE_PREFIX"
    )
    snap.set_defaults(handler=cmd_snapshot)

    rt = commands.add_parser("runtime", help="manage n8n runtimes from the npm registry")
    rt_commands = rt.add_subparsers(dest="runtime_command", required=True, metavar="ACTION")
    rt_install = rt_commands.add_parser("install", help="install an n8n version with its Node.js")
    rt_install.add_argument("version", nargs="?", default=runtime.DEFAULT_N8N_VERSION)
    rt_install.add_argument("--quiet", action="store_true", help="hide npm's output")
    rt_install.set_defaults(handler=cmd_runtime_install)

    from verify.demo import add_demo_command  # the demo drives the verify suite

    add_demo_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``n8n-backup``: one line on stderr for any expected failure."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except BackupError as exc:
        print(f"n8n-backup: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("n8n-backup: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
