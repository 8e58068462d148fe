"""Benchmark: what a restic repository costs and saves over nightly snapshots.

    .venv/bin/python bench/repository.py [--nights 30] [--base-mb 200] [--executions 300]

Boots a throwaway n8n (process runtime, default version) on loopback with the real-workflow
corpus from ../shared, inflates its SQLite database with execution data to --base-mb, then
for each night adds --executions executions (about 50 KB of data each), edits --edits workflows
through the API, takes a snapshot (the library's create_snapshot) and stores it in a local restic
repository (backup.repository.snapshots.store, which also confirms every file). It prints, from
this one run: the repository's size against the sum of the snapshots and against one snapshot,
and the time of snapshot + store against the snapshot alone. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backup.keystore import KeyStore  # noqa: E402
from backup.n8n.api import writable_workflow  # noqa: E402
from backup.n8n.folder import locate  # noqa: E402
from backup.repository import snapshots as stored  # noqa: E402
from backup.repository.restic import Password, ResticRepository  # noqa: E402
from backup.snapshot import SnapshotRequest, create_snapshot  # noqa: E402
from bench.throwaway import CORPUS, add_executions, throwaway_n8n  # noqa: E402


def _tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--base-mb", type=int, default=200)
    parser.add_argument("--executions", type=int, default=300, help="new executions per night")
    parser.add_argument("--edits", type=int, default=20, help="workflows edited per night")
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="bench-repository-") as work_name:
        work = Path(work_name)
        password = work / "password"
        password.write_text("bench repository password\n")
        password.chmod(0o600)
        repo = ResticRepository(str(work / "repository"), Password(file=password))
        repo.init()
        with throwaway_n8n(work, len(list(CORPUS.glob("*.json")))) as throwaway:
            api = throwaway.api
            workflow_ids = [str(item["id"]) for item in api.iter_workflows()]
            folder = locate(work / "n8n")
            database = folder.database
            while database.stat().st_size < args.base_mb * 1_000_000:
                add_executions(database, 200, workflow_ids, rng)
            rows = []
            for night in range(args.nights):
                add_executions(database, args.executions, workflow_ids, rng)
                for workflow_id in rng.sample(workflow_ids, args.edits):
                    workflow = api.workflow(workflow_id)
                    workflow["name"] = f"{workflow['name'].split(' (night')[0]} (night {night})"
                    api.update_workflow(workflow_id, writable_workflow(workflow))
                started = time.monotonic()
                request = SnapshotRequest(folder, api, work / "snapshots", KeyStore(work / "keys"))
                snapshot = create_snapshot(request)
                snapshot_seconds = time.monotonic() - started
                started = time.monotonic()
                stored.store(repo, snapshot, lambda message: None)
                store_seconds = time.monotonic() - started
                rows.append(
                    {
                        "night": night + 1,
                        "snapshot_bytes": _tree_size(snapshot),
                        "repository_bytes": _tree_size(work / "repository"),
                        "snapshot_seconds": round(snapshot_seconds, 2),
                        "store_seconds": round(store_seconds, 2),
                    }
                )
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                shutil.rmtree(snapshot)
    total = sum(row["snapshot_bytes"] for row in rows)
    last = rows[-1]
    snapshot_median = statistics.median(row["snapshot_seconds"] for row in rows)
    store_median = statistics.median(row["store_seconds"] for row in rows)
    summary = {
        "nights": args.nights,
        "machine": f"{os.cpu_count()} cores",
        "one_snapshot_mb": round(last["snapshot_bytes"] / 1e6, 1),
        "sum_of_snapshots_mb": round(total / 1e6, 1),
        "repository_mb": round(last["repository_bytes"] / 1e6, 1),
        "repository_vs_sum": round(last["repository_bytes"] / total, 3),
        "repository_vs_one_snapshot": round(last["repository_bytes"] / last["snapshot_bytes"], 2),
        "snapshot_median_s": snapshot_median,
        "store_median_s": store_median,
        "snapshot_with_repo_vs_without": round(
            (snapshot_median + store_median) / snapshot_median, 2
        ),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
