"""Benchmark: snapshot and verify time, snapshot size, and peak memory for N workflows.

    .venv/bin/python bench/snapshot_and_verify.py [--workflows 1000] [--credentials 30]

Boots a throwaway n8n (process runtime, default version) on loopback, fills it from the
real-workflow corpus in ../shared (cycled with new names), then measures `create_snapshot` in this
process and `pytest verify` in a subprocess. Prints one JSON object. Not part of the test suite:
the figures depend on the machine, so they are measured here and not asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backup.keystore import KeyStore  # noqa: E402
from backup.n8n import npm  # noqa: E402
from backup.n8n.api import N8nApi  # noqa: E402
from backup.n8n.folder import locate  # noqa: E402
from backup.n8n.instances.process import N8nProcess  # noqa: E402
from backup.snapshot import SnapshotRequest, create_snapshot  # noqa: E402
from verify.bootstrap import create_owner_and_api_key  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "real-workflows"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--credentials", type=int, default=30)
    args = parser.parse_args()
    corpus = [json.loads(p.read_text()) for p in sorted(CORPUS.glob("*.json"))]
    launcher = npm.install(npm.DEFAULT_N8N_VERSION, log=False)
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "n8n").mkdir()
        with N8nProcess(launcher, Path(work) / "n8n", None, boot_timeout=240) as n8n:
            api_key = create_owner_and_api_key(n8n.base_url)
            seeding = N8nApi(n8n.base_url, api_key)
            started = time.monotonic()
            for index in range(args.workflows):
                workflow = dict(corpus[index % len(corpus)])
                workflow["name"] = f"{workflow['name']} #{index}"
                seeding.create_workflow(workflow)
            for index in range(args.credentials):
                seeding.create_credential(
                    f"bench {index}", "httpHeaderAuth", {"name": "X", "value": f"v{index}"}
                )
            seed_seconds = time.monotonic() - started
            seeding.close()

            snapshots, keys = Path(work) / "snapshots", Path(work) / "keys"
            started = time.monotonic()
            with N8nApi(n8n.base_url, api_key) as api:
                request = SnapshotRequest(
                    locate(Path(work) / "n8n"), api, snapshots, KeyStore(keys)
                )
                snapshot = create_snapshot(request)
            snapshot_seconds = time.monotonic() - started
            peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            size = sum(p.stat().st_size for p in snapshot.rglob("*") if p.is_file())
        started = time.monotonic()
        verify = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                str(ROOT / "verify"),
                "--snapshots",
                str(snapshot),
                "--key-store",
                str(keys),
                "--runtime",
                "process",
                "-q",
                "--html",
                str(Path(work) / "r.html"),
                "--junitxml",
                str(Path(work) / "r.xml"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        verify_seconds = time.monotonic() - started
    print(
        json.dumps(
            {
                "workflows": args.workflows,
                "credentials": args.credentials,
                "seed_seconds": round(seed_seconds, 1),
                "snapshot_seconds": round(snapshot_seconds, 2),
                "snapshot_peak_rss_mb": round(peak_rss_mb, 1),
                "snapshot_bytes": size,
                "verify_seconds": round(verify_seconds, 1),
                "verify_result": (verify.stdout.strip().splitlines() or ["?"])[-1],
            }
        )
    )


if __name__ == "__main__":
    main()
