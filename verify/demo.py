"""The embedded default: a throwaway n8n with sample content, snapshotted and verified.

``n8n-backup demo`` shows the whole loop on a fresh machine without any n8n of the user's:
install a runtime, boot a demo n8n, give it workflows and credentials, take a snapshot, stop it,
then run ``pytest verify`` on the snapshot, which writes the HTML report under reports/.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from backup import runtime
from backup.atomic import make_private_dir, write_text_atomic
from backup.keystore import KeyStore
from backup.n8n_folder import locate
from backup.snapshot import SnapshotRequest, create_snapshot
from backup.sources.api import N8nApi
from verify.bootstrap import (
    PublicApi,
    create_owner_and_api_key,
    sample_credentials,
    sample_workflow,
)
from verify.runtime.process import N8nProcess

DEMO_DIR = Path(".demo")
BOOT_TIMEOUT = 180.0
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def seed_demo_content(base_url: str, api_key: str) -> None:
    """Sample workflows and three kinds of credentials, each secret unique to this run."""
    api = PublicApi(base_url, api_key)
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
    launcher = runtime.install(version)
    source = work_dir / "source"
    shutil.rmtree(source, ignore_errors=True)
    make_private_dir(source)
    snapshots, key_store = work_dir / "snapshots", work_dir / "keys"
    print(f"demo: starting a throwaway n8n {version} in {source}", flush=True)
    with N8nProcess(launcher, source, None) as instance:
        instance.start(timeout=BOOT_TIMEOUT)
        api_key = create_owner_and_api_key(instance.base_url)
        write_text_atomic(work_dir / "api-key", api_key)
        seed_demo_content(instance.base_url, api_key)
        with N8nApi(instance.base_url, api_key) as api:
            snapshot = create_snapshot(
                SnapshotRequest(locate(source), api, snapshots, KeyStore(key_store))
            )
    print(f"demo: snapshot {snapshot}; verifying it in a fresh n8n", flush=True)
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(PROJECT_ROOT / "verify"),
        "--snapshots",
        str(snapshot),
        "--key-store",
        str(key_store),
        "--runtime",
        "process",  # the demo runs on the npm runtime it has just installed
    ]
    return subprocess.run(command, cwd=PROJECT_ROOT, check=False).returncode


def cmd_demo(args: argparse.Namespace) -> int:
    """Handler of ``n8n-backup demo``."""
    return run_demo(make_private_dir(args.work_dir.resolve()), args.version)


def add_demo_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``demo`` on the n8n-backup command line."""
    demo = commands.add_parser("demo", help="snapshot and verify a throwaway demo n8n")
    demo.add_argument("--work-dir", type=Path, default=DEMO_DIR, help="demo data (default .demo)")
    demo.add_argument("--version", default=runtime.DEFAULT_N8N_VERSION, help="n8n version")
    demo.set_defaults(handler=cmd_demo)
