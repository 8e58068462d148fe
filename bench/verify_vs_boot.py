"""Benchmark: verify of one snapshot against a bare n8n boot of the same restored data.

    .venv/bin/python bench/verify_vs_boot.py [--workflows 100,5000] [--credentials 1000] [--runs 3]

For each size: boots a throwaway n8n (process runtime, default version) on loopback, fills it
with the real-workflow corpus cycled to N workflows and with --credentials credentials, takes a
snapshot, and then, in this one run, measures (median of --runs):
- bare boot: the snapshot restored to a temporary folder as verify restores it, then n8n started
  on it with the saved key until it is ready (the floor: what any restore test must pay);
- verify: `pytest verify` on the snapshot, all checks, default quiet window, wall time;
- verify with --quiet-seconds 0 (what the checks themselves cost).
Prints one JSON object with the ratios to the bare boot. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backup.keystore import KeyStore  # noqa: E402
from backup.manifest import authenticate  # noqa: E402
from backup.n8n import npm  # noqa: E402
from backup.n8n.folder import locate, read_encryption_key  # noqa: E402
from backup.n8n.instances.base import outbound_env  # noqa: E402
from backup.n8n.instances.process import N8nProcess  # noqa: E402
from backup.secret import Secret  # noqa: E402
from backup.snapshot import SnapshotRequest, create_snapshot  # noqa: E402
from bench.throwaway import throwaway_n8n, timed_command, verify_command  # noqa: E402
from verify.restore import restore_to_temp  # noqa: E402


def _bare_boot(snapshot: Path, key: str) -> float:
    """Seconds from starting n8n on a restored copy of ``snapshot`` to its readiness."""
    manifest = authenticate(snapshot, key)
    folder = restore_to_temp(snapshot, manifest, Secret(key))
    launcher = npm.install(npm.DEFAULT_N8N_VERSION, log=False)
    env = {"DB_TABLE_PREFIX": "", **outbound_env(npm.DEFAULT_N8N_VERSION)}
    try:
        n8n = N8nProcess(launcher, folder.user_folder, key, extra_env=env)
        started = time.monotonic()
        with n8n:  # entering starts it and waits for readiness
            return time.monotonic() - started
    finally:
        folder.cleanup()


def _verify(snapshot: Path, keys: Path, work: Path, *extra: str) -> tuple[float, int]:
    reports = ("--html", str(work / "r.html"), "--junitxml", str(work / "r.xml"))
    command = verify_command(snapshot.parent, keys, *reports, *extra)
    seconds, code, peak = timed_command(command, work)
    if code != 0:
        result = json.loads((work / "r.json").read_text())
        causes = [cause for entry in result["entries"] for cause in entry["causes"]]
        raise SystemExit(f"verify {' '.join(extra)} failed ({code}): {causes}")
    return seconds, peak


def _measure(workflows: int, credentials: int, runs: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as work_name:
        work = Path(work_name)
        keys = work / "keys"
        started = time.monotonic()
        with throwaway_n8n(work, workflows, credentials) as throwaway:
            seeded = time.monotonic() - started
            request = SnapshotRequest(
                locate(work / "n8n"), throwaway.api, work / "snapshots", KeyStore(keys)
            )
            snapshot = create_snapshot(request)
        key = read_encryption_key(locate(work / "n8n"), None)
        boots, verifies, quick, peaks = [], [], [], []
        for _ in range(runs):  # interleaved, so that drift hits all three alike
            boots.append(_bare_boot(snapshot, key))
            seconds, peak = _verify(snapshot, keys, work)
            verifies.append(seconds)
            peaks.append(peak)
            quick.append(_verify(snapshot, keys, work, "--quiet-seconds", "0")[0])
    boot, verify, verify_quick = (statistics.median(v) for v in (boots, verifies, quick))
    return {
        "workflows": workflows,
        "credentials": credentials,
        "seed_seconds": round(seeded, 1),
        "bare_boot_s": round(boot, 2),
        "verify_s": round(verify, 2),
        "verify_quiet_0_s": round(verify_quick, 2),
        "verify_vs_boot": round(verify / boot, 2),
        "verify_quiet_0_vs_boot": round(verify_quick / boot, 2),
        "verify_peak_mb": round(max(peaks) / 1e6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", default="100,5000", help="comma-separated sizes")
    parser.add_argument("--credentials", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for size in (int(value) for value in args.workflows.split(",")):
        rows.append(_measure(size, args.credentials, args.runs))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    machine = f"{os.cpu_count()} cores, n8n {npm.DEFAULT_N8N_VERSION}, process runtime"
    print(json.dumps({"machine": machine, "sizes": rows}, indent=2))


if __name__ == "__main__":
    main()
