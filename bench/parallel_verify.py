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
import subprocess
import sys
import tempfile
import threading
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
PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_rss(root_pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(proc.name)] = int(fields[1])
            rss[int(proc.name)] = int((proc / "statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(rss.get(pid, 0) for pid in tree)


def _timed_verify(snapshots: Path, keys: Path, *extra: str) -> dict[str, float]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(ROOT / "verify"),
        "--snapshots",
        str(snapshots),
        "--key-store",
        str(keys),
        "--runtime",
        "process",
        "-q",
        "-p",
        "no:cacheprovider",
        *extra,
    ]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=snapshots.parent, stdout=subprocess.DEVNULL)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    done.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"verify {' '.join(extra)} exited {code}")
    return {"seconds": round(time.monotonic() - started, 1), "peak_mb": round(peak / 1e6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workflows", type=int, default=128)
    args = parser.parse_args()
    corpus = [json.loads(p.read_text()) for p in sorted(CORPUS.glob("*.json"))]
    launcher = npm.install(npm.DEFAULT_N8N_VERSION, log=False)
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as work_name:
        work = Path(work_name)
        (work / "n8n").mkdir()
        keys = work / "keys"
        with N8nProcess(launcher, work / "n8n", None, boot_timeout=240) as n8n:
            api_key = create_owner_and_api_key(n8n.base_url)
            with N8nApi(n8n.base_url, api_key) as api:
                for index in range(args.workflows):
                    workflow = dict(corpus[index % len(corpus)])
                    workflow["name"] = f"{workflow['name']} #{index}"
                    api.create_workflow(workflow)
                request = SnapshotRequest(locate(work / "n8n"), api, work / "taken", KeyStore(keys))
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
