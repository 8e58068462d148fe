"""Benchmark: verify N snapshots with 1 worker and with W workers (pytest-xdist), side by side.

    .venv/bin/python bench/parallel_verify.py [--snapshots 8] [--workers 2] [--workflows 128]

Boots a throwaway n8n (process runtime, default version) on loopback, fills it from the
real-workflow corpus in ../shared (cycled to --workflows), takes one snapshot, copies it to
--snapshots folders, then runs `pytest verify` on them serially and with `-n W`, measuring wall
time and the peak memory of the whole process tree (sampled every 0.2 s). Prints one JSON object
with the throughput ratio. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backup.keystore import KeyStore  # noqa: E402
from backup.n8n.folder import locate  # noqa: E402
from backup.snapshot import SnapshotRequest, create_snapshot  # noqa: E402
from bench.throwaway import throwaway_n8n, timed_command, verify_command  # noqa: E402


def _timed_verify(snapshots: Path, keys: Path, *extra: str) -> dict[str, float]:
    seconds, code, peak = timed_command(verify_command(snapshots, keys, *extra), snapshots.parent)
    if code != 0:
        raise SystemExit(f"verify {' '.join(extra)} exited {code}")
    return {"seconds": round(seconds, 1), "peak_mb": round(peak / 1e6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workflows", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as work_name:
        work = Path(work_name)
        keys = work / "keys"
        with throwaway_n8n(work, args.workflows) as throwaway:
            request = SnapshotRequest(
                locate(work / "n8n"), throwaway.api, work / "taken", KeyStore(keys)
            )
            taken = create_snapshot(request)
        snapshots = work / "snapshots"
        for index in range(args.snapshots):
            shutil.copytree(taken, snapshots / f"copy-{index:02d}")
        serial = _timed_verify(snapshots, keys)
        parallel = _timed_verify(snapshots, keys, "-n", str(args.workers))
    print(
        json.dumps(
            {
                "machine": f"{os.cpu_count()} cores",
                "snapshots": args.snapshots,
                "workflows": args.workflows,
                "serial": serial,
                f"workers_{args.workers}": parallel,
                "throughput_ratio": round(serial["seconds"] / parallel["seconds"], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
