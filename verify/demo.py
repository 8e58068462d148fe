"""The embedded default: a throwaway n8n with sample content, snapshotted and verified.

``n8n-demo`` (scripts/demo.sh) shows the whole loop on a fresh machine without any n8n of the
user's: install a runtime, boot a demo n8n, give it workflows and credentials, take a snapshot,
stop it, then run the verify suite (n8n-verify) on the snapshot, which writes the HTML report
under reports/ in the current folder.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from backup.atomic import make_private_dir, write_text_atomic
from backup.cli import run_command
from backup.interrupts import interrupts_ignored
from backup.keystore import KeyStore
from backup.n8n import npm
from backup.n8n.api import N8nApi
from backup.n8n.folder import locate
from backup.n8n.instances.process import N8nProcess
from backup.snapshot import SnapshotRequest, create_snapshot
from verify.bootstrap import (
    create_owner_and_api_key,
    sample_credentials,
    sample_workflow,
)

DEMO_DIR = Path(".demo")
BOOT_TIMEOUT = 180.0


def seed_demo_content(base_url: str, api_key: str) -> None:
    """Sample workflows and three kinds of credentials, each secret unique to this run."""
    api = N8nApi(base_url, api_key)
    try:
        for index, name in enumerate(
            ["Hello world", "Nightly report", "Ünïcode ✓ 工作流", "../../x"]
        ):
            api.create_workflow(sample_workflow(name, message=f"demo {index}"))
        for name, type_, data in sample_credentials(secrets.token_hex(8)):
            api.create_credential(name, type_, data)
    finally:
        api.close()


def run_demo(work_dir: Path, version: str) -> int:
    """Boot, seed, snapshot, stop, verify; return pytest's exit code."""
    launcher = npm.install(version)
    source = work_dir / "source"
    shutil.rmtree(source, ignore_errors=True)
    make_private_dir(source)
    snapshots, key_store = work_dir / "snapshots", work_dir / "keys"
    print(f"demo: starting a throwaway n8n {version} in {source}", flush=True)
    with N8nProcess(launcher, source, None, boot_timeout=BOOT_TIMEOUT) as instance:
        api_key = create_owner_and_api_key(instance.base_url)
        write_text_atomic(work_dir / "api-key", api_key)
        seed_demo_content(instance.base_url, api_key)
        with N8nApi(instance.base_url, api_key) as api:
            snapshot = create_snapshot(
                SnapshotRequest(locate(source), api, snapshots, KeyStore(key_store))
            )
    print(f"demo: snapshot {snapshot}; verifying it in a fresh n8n", flush=True)
    # n8n-verify: the installed suite, reports/ under the current folder (the checkout's root
    # when run by scripts/demo.sh).
    command = [
        sys.executable,
        "-m",
        "verify.command",
        "--snapshots",
        str(snapshot),
        "--key-store",
        str(key_store),
        "--runtime",
        "process",  # the demo runs on the npm runtime it has just installed
    ]
    # Its own session: verify hears of an interruption once, from the demo (a terminal's
    # Ctrl-C and the demo's passing it on, both at once, could cut verify's clean-up short).
    verify = subprocess.Popen(command, start_new_session=True)
    try:
        return verify.wait()
    except KeyboardInterrupt:
        # SIGTERM, which verify takes as Ctrl-C (SIGINT it may have inherited as ignored, when
        # a script started the demo in the background); then wait whatever else arrives.
        with interrupts_ignored():
            verify.send_signal(signal.SIGTERM)  # verify stops its n8n and removes its copy
            verify.wait()
        raise


def build_parser() -> argparse.ArgumentParser:
    """The ``n8n-demo`` command line."""
    parser = argparse.ArgumentParser(
        prog="n8n-demo",
        description="Snapshot a throwaway demo n8n and verify it in a fresh one; the report "
        "lands in reports/.",
    )
    parser.add_argument("--work-dir", type=Path, default=DEMO_DIR, help="demo data (default .demo)")
    parser.add_argument(
        "--n8n-version", default=npm.DEFAULT_N8N_VERSION, help="n8n version of the demo"
    )
    # The old spelling, kept for a release.
    parser.add_argument("--version", dest="n8n_version", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``n8n-demo``."""
    args = build_parser().parse_args(argv)
    return run_command(
        "n8n-demo", lambda a: run_demo(make_private_dir(a.work_dir.resolve()), a.n8n_version), args
    )


if __name__ == "__main__":
    sys.exit(main())
