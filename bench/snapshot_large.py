"""Benchmark: snapshot of a large SQLite database against `cp` and `sqlite3 .backup`, and the
snapshot's peak memory as the number of workflows grows.

    .venv/bin/python bench/snapshot_large.py [--database-mb 1000] [--workflows 1000,10000]
                                             [--runs 3] [--n8n-version V]

Part one boots a throwaway n8n (process runtime) on loopback with 100 corpus workflows,
inflates its SQLite database with execution data to --database-mb, and times (median of --runs)
`cp` of the database file, `sqlite3 .backup` of it and `n8n-backup snapshot` (all steps: API
export, consistent copy, integrity check, hashes, manifest) of the running instance. Part two
takes a snapshot of a throwaway n8n holding each --workflows count of corpus workflows and
records the snapshot command's peak memory. n8n 1.x keeps SQLite in rollback-journal mode,
2.x in WAL mode: the copy differs (see backup/n8n/sqlite.copy_database), so run both versions.
Prints one JSON object. Not part of the test suite.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backup.n8n import npm  # noqa: E402
from backup.n8n.folder import locate  # noqa: E402
from bench.throwaway import Throwaway, add_executions, throwaway_n8n, timed_command  # noqa: E402

BACKUP_COMMAND = Path(sys.executable).parent / "n8n-backup"


def _snapshot_command(work: Path, throwaway: Throwaway, out: Path) -> list[str]:
    key_file = work / "api-key"
    key_file.write_text(throwaway.api_key)
    key_file.chmod(0o600)
    return [
        str(BACKUP_COMMAND), "snapshot", "--quiet", "--n8n-folder", str(work / "n8n"),
        "--api-url", throwaway.process.base_url, "--api-key-file", str(key_file),
        "--snapshots", str(out), "--key-store", str(work / "keys"),
    ]  # fmt: skip


def _median_run(command: list[str], work: Path, output: Path, runs: int) -> dict[str, float]:
    """Median seconds and peak memory of ``command`` over ``runs``; ``output`` is removed."""
    seconds, peaks = [], []
    for _ in range(runs):
        took, code, peak = timed_command(command, work)
        if code != 0:
            raise SystemExit(f"{command[0]} exited {code}")
        seconds.append(took)
        peaks.append(peak)
        if output.is_dir():
            shutil.rmtree(output)
        else:
            output.unlink(missing_ok=True)
    return {"seconds": round(statistics.median(seconds), 2), "peak_mb": round(max(peaks) / 1e6)}


def _large_database(database_mb: int, runs: int, version: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-large-") as work_name:
        work = Path(work_name)
        with throwaway_n8n(work, 100, version=version) as throwaway:
            database = locate(work / "n8n").database
            ids = [str(item["id"]) for item in throwaway.api.iter_workflows()]
            rng = random.Random(7)
            while database.stat().st_size < database_mb * 1_000_000:
                add_executions(database, 500, ids, rng)
            copy = work / "copy.sqlite"
            cp = _median_run(["cp", str(database), str(copy)], work, copy, runs)
            backup = _median_run(["sqlite3", str(database), f".backup {copy}"], work, copy, runs)
            out = work / "snapshots"
            snapshot = _median_run(_snapshot_command(work, throwaway, out), work, out, runs)
            size = database.stat().st_size
    return {
        "n8n": version,
        "database_mb": round(size / 1e6),
        "cp_s": cp["seconds"],
        "sqlite3_backup_s": backup["seconds"],
        "snapshot_s": snapshot["seconds"],
        "snapshot_peak_mb": snapshot["peak_mb"],
        "snapshot_vs_cp": round(snapshot["seconds"] / cp["seconds"], 2),
        "snapshot_vs_sqlite3_backup": round(snapshot["seconds"] / backup["seconds"], 2),
    }


def _memory(workflows: int, version: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as work_name:
        work = Path(work_name)
        with throwaway_n8n(work, workflows, version=version) as throwaway:
            out = work / "snapshots"
            run = _median_run(_snapshot_command(work, throwaway, out), work, out, 1)
    return {"workflows": workflows, "snapshot_s": run["seconds"], "peak_mb": run["peak_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-mb", type=int, default=1000)
    parser.add_argument("--workflows", default="1000,10000", help="comma-separated counts")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n8n-version", default=npm.DEFAULT_N8N_VERSION)
    args = parser.parse_args()
    large = _large_database(args.database_mb, args.runs, args.n8n_version)
    print(json.dumps(large), file=sys.stderr, flush=True)
    memory = []
    for count in (int(value) for value in args.workflows.split(",") if value):
        memory.append(_memory(count, args.n8n_version))
        print(json.dumps(memory[-1]), file=sys.stderr, flush=True)
    machine = f"{os.cpu_count()} cores, process runtime"
    print(json.dumps({"machine": machine, "large_database": large, "memory": memory}, indent=2))


if __name__ == "__main__":
    main()
